"""The ``type: trm`` stage's trainer: trains a Tiny Recursive Model on puzzles with deep supervision, then evaluates it.

One optimizer step (``TRMRun._step``) is one supervision step of B examples in flight ("slots", B over
all processes): slots whose example halted take a new one with fresh states (y0, z0); the model runs
one deep recursion from each slot's carried (y, z); the loss is cross-entropy of the decoded answer
(mean over cells, then over slots) + halt_loss_weight x BCE of the Q head against "the answer is
right"; then AdamW, the EMA, and the states carried on detached. An example halts after
supervision_steps steps, or earlier when the Q head says so (halting on) and it has taken its
exploration minimum. Each process holds B / W slots; DDP averages the gradients, so with equal shares
the update is that of one process holding all B slots.

Checkpoints (``save_steps``) hold the weights, optimizer, scheduler, EMA and each process's slots
(states, puzzles, steps taken, examples drawn): a resumed run continues exactly. The model saved in
``model/`` holds the evaluated weights (the EMA when on) with ``config.json`` (the stage section) to
rebuild it, next to the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from reasonkit.checkpoints import check_same_world, checkpoint_to_resume, resuming_from, saving_checkpoint
from reasonkit.config import build_section, to_dict
from reasonkit.errors import ReasonkitError
from reasonkit.launch import forget_mixed_precision, process_state
from reasonkit.manifest import package_versions, write_manifest
from reasonkit.schedule import adamw
from reasonkit.stage import StageContext, StageRecord
from reasonkit.trm.data import PuzzleKind, SlotFeed, puzzle_splits
from reasonkit.trm.evaluate import evaluate_model, evaluate_split, report
from reasonkit.trm.model import TRM, cell_losses, learning_rate_factor, parameter_count
from reasonkit.trm.schema import TRMStage, default_eval_steps, effective_supervision_steps, ema_decay

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


class TRMError(ReasonkitError, RuntimeError):
    pass


@dataclass
class Slots:
    """This process's share of the B examples in flight. [b] = B / W slots, L cells, D hidden."""

    ids: torch.Tensor  # [b] global slot numbers
    drawn: torch.Tensor  # [b] examples each slot has taken so far (its data position)
    tokens: torch.Tensor  # [b, L] the puzzles
    labels: torch.Tensor  # [b, L]
    y: torch.Tensor  # [b, L, D] carried answer state
    z: torch.Tensor  # [b, L, D] carried latent state
    steps: torch.Tensor  # [b] supervision steps taken on the current example
    min_steps: torch.Tensor  # [b] steps before the Q head may halt it (exploration)
    halted: torch.Tensor  # [b] bool: take a new example before the next step


def build_model(stage: TRMStage, kind: PuzzleKind) -> TRM:
    return TRM(stage.network, kind.vocab_size, kind.seq_len, halting=stage.halting)


def load_trm(directory: str | Path) -> tuple[TRMStage, PuzzleKind, TRM]:
    """(stage section, puzzle kind, model with the saved weights) of a trm stage's model/ folder."""
    directory = Path(directory)
    saved = directory / CONFIG_FILE
    stage = build_section(TRMStage, json.loads(saved.read_text()), str(saved), "the stage's saved settings")
    kind = PuzzleKind(stage.task)
    model = build_model(stage, kind)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
    return stage, kind, model


class TRMRun:
    def __init__(self, ctx: StageContext, stage: TRMStage, resume: bool = False):
        self.ctx, self.stage, self.resume = ctx, stage, resume
        self.record = StageRecord(ctx, stage, "trm")
        self.seed, self.checkpoint_root = self.record.seed, ctx.checkpoint_root
        self.n_sup = effective_supervision_steps(stage)

    def setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        process_state()
        forget_mixed_precision()
        self.accelerator = Accelerator(mixed_precision="no", step_scheduler_with_optimizer=False)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        if self.stage.batch_size % self.world:
            raise TRMError(
                f"stages.{self.ctx.name}.batch_size {self.stage.batch_size} is not divisible by {self.world} processes"
            )
        self.kind = PuzzleKind(self.stage.task)
        self.splits = puzzle_splits(self.stage.task)
        set_seed(self.seed)  # the same initial weights on every process
        self._setup_model()
        self._setup_optimizer()
        self._setup_slots()
        self.step = 0
        self.record.open_log()
        if self.resume:
            self._load_latest_checkpoint()

    def _setup_model(self) -> None:
        self.model = build_model(self.stage, self.kind)
        if self.stage.init != "model":  # continue an earlier trm stage
            self.model.load_state_dict(torch.load(Path(self.ctx.init_path) / WEIGHTS_FILE, weights_only=True))
        self.ema = (
            {n: p.detach().clone() for n, p in self.model.named_parameters()} if self.stage.ema else None
        )
        self.ema_decay = ema_decay(self.stage)

    def _setup_optimizer(self) -> None:
        s = self.stage
        optimizer = adamw(
            self.model.parameters(),
            lr=s.learning_rate,
            betas=(s.adam_beta1, s.adam_beta2),
            weight_decay=s.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate_factor(step, s.warmup_steps, s.max_steps, s.lr_scheduler)
        )
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.scheduler = scheduler  # stepped once per optimizer step, by us (not per process by accelerate)

    def _setup_slots(self) -> None:
        share = self.stage.batch_size // self.world
        ids = torch.arange(self.rank * share, (self.rank + 1) * share)
        self.feed = SlotFeed(
            self.splits["train"],
            self.kind,
            self.stage.batch_size,
            range(ids[0], ids[-1] + 1),
            self.seed,
            self.stage.task.augment,
        )
        L = self.kind.seq_len
        y, z = self._raw_model().initial_state(share)
        self.slots = Slots(
            ids=ids,
            drawn=torch.zeros(share, dtype=torch.long),
            tokens=torch.zeros(share, L, dtype=torch.long),
            labels=torch.zeros(share, L, dtype=torch.long),
            y=y,
            z=z,
            steps=torch.zeros(share, dtype=torch.long),
            min_steps=torch.ones(share, dtype=torch.long),
            halted=torch.ones(share, dtype=torch.bool),
        )

    def _raw_model(self) -> TRM:
        return self.accelerator.unwrap_model(self.model)

    def train(self) -> None:
        s = self.stage
        with tqdm(
            total=s.max_steps,
            initial=self.step,
            desc=f"trm {self.ctx.name}",
            unit="step",
            disable=not self.ctx.is_main_process,
        ) as bar:
            while self.step < s.max_steps:
                metrics = self._step()
                self.step += 1
                bar.update(1)
                if self.step % s.logging_steps == 0 or self.step == s.max_steps:
                    metrics = self._over_processes(metrics)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", exact=f"{metrics['train_exact']:.2f}")
                    self.record.log(self.step, metrics)
                if s.save_steps and self.step % s.save_steps == 0 and self.step < s.max_steps:
                    self.save_checkpoint()

    def _refill(self) -> None:
        """Halted slots take their stream's next example and start from (y0, z0)."""
        slots, model = self.slots, self._raw_model()
        for i in torch.nonzero(slots.halted).flatten().tolist():
            puzzle, label, min_steps = self.feed.example(
                int(slots.ids[i]), int(slots.drawn[i]), self.n_sup, self.stage.halt_exploration
            )
            slots.tokens[i], slots.labels[i], slots.min_steps[i] = puzzle, label, min_steps
            slots.drawn[i] += 1
            slots.steps[i] = 0
        if slots.halted.any():
            y0, z0 = model.initial_state(1)
            slots.y[slots.halted], slots.z[slots.halted] = y0[0], z0[0]
            slots.halted[:] = False

    def _step(self) -> dict:
        s, slots = self.stage, self.slots
        self._refill()
        self.model.train()
        out = self.model(slots.tokens, slots.y, slots.z)
        cross_entropy = cell_losses(out.logits, slots.labels, s.loss).mean(-1)  # [b]
        correct = (out.logits.argmax(-1) == slots.labels).all(-1)  # [b]
        loss = cross_entropy
        halt_bce = torch.zeros_like(cross_entropy)
        if out.halt_logits is not None:
            halt_bce = F.binary_cross_entropy_with_logits(out.halt_logits, correct.float(), reduction="none")
            loss = loss + s.halt_loss_weight * halt_bce
        # Mean over this process's slots; DDP averages over processes, which (equal shares) is the
        # mean over all B slots, as one process holding them all would take.
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss.mean())
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self._update_ema()

        slots.y, slots.z = out.y, out.z  # detached by the model
        slots.steps += 1
        halted = slots.steps >= self.n_sup
        if out.halt_logits is not None:
            halted |= (out.halt_logits.detach() > 0) & (slots.steps >= slots.min_steps)
        slots.halted = halted
        return {
            "sum/loss": loss.detach().sum().item(),
            "sum/cross_entropy": cross_entropy.detach().sum().item(),
            "sum/halt_bce": halt_bce.detach().sum().item(),
            "sum/train_exact": correct.float().sum().item(),
            "sum/slots": float(len(correct)),
            "sum/halted": float(halted.sum()),
            "sum/halted_steps": float(slots.steps[halted].sum()),
            "grad_norm": float(grad_norm),
            "learning_rate": self.scheduler.get_last_lr()[0],
        }

    def _over_processes(self, local: dict) -> dict:
        """Sums over processes of the ``sum/`` entries, turned into means over slots (or halted examples)."""
        keys = [k for k in local if k.startswith("sum/")]
        totals = torch.tensor([local[k] for k in keys], dtype=torch.float64)
        if self.world > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        summed = dict(zip((k[4:] for k in keys), totals.tolist()))
        slots, halted = summed.pop("slots"), summed.pop("halted")
        metrics = {k: v / slots for k, v in summed.items() if k != "halted_steps"}
        if halted:
            metrics["halted_average_steps"] = summed["halted_steps"] / halted
        return {**metrics, "grad_norm": local["grad_norm"], "learning_rate": local["learning_rate"]}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        for name, p in self._raw_model().named_parameters():
            self.ema[name].lerp_(p.detach(), 1 - self.ema_decay)

    def evaluated_weights(self) -> dict[str, torch.Tensor]:
        """The weights evaluation and later stages use: the EMA when on, else the trained ones."""
        state = {k: v.detach().clone() for k, v in self._raw_model().state_dict().items()}
        if self.ema is not None:
            state.update({k: v.clone() for k, v in self.ema.items()})
        return state

    def objective(self) -> dict:
        raw = self._raw_model()
        return {
            "method": "trm: deep recursion with deep supervision (Jolicoeur-Martineau 2025)",
            "stage": dataclasses.asdict(self.stage),
            "parameters": parameter_count(raw),
            "effective_depth_per_supervision_step": raw.effective_depth(),
            "ema_decay": self.ema_decay if self.ema is not None else None,
            "versions": package_versions(),
        }

    def save_checkpoint(self) -> None:
        """Weights, optimizer, scheduler, EMA and each process's slots; visible only once whole (checkpoints.py)."""

        def manifest(directory):
            write_manifest(
                directory, stage="trm", objective=self.objective(), traces=False, think_prefilled=False
            )

        with saving_checkpoint(self.checkpoint_root, self.step, self.accelerator, manifest) as partial:
            if self.ctx.is_main_process:
                torch.save(
                    {
                        "model": self._raw_model().state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "ema": self.ema,
                        "step": self.step,
                        "world": self.world,
                    },
                    partial / "state.pt",
                )
            torch.save(dataclasses.asdict(self.slots), partial / f"slots-{self.rank}.pt")

    def _load_latest_checkpoint(self) -> None:
        latest = checkpoint_to_resume(self.checkpoint_root, self.accelerator)
        if latest is None:
            return
        with resuming_from(latest):
            state = torch.load(latest / "state.pt", weights_only=False)
            check_same_world(latest, state["world"], self.world)
            self._raw_model().load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.ema, self.step = state["ema"], state["step"]
            self.slots = Slots(**torch.load(latest / f"slots-{self.rank}.pt", weights_only=False))
        self.record.resumed_at(self.step)
        log.info("resumed from %s (step %d)", latest, self.step)

    def save_final(self) -> None:
        if not self.ctx.is_main_process:
            return
        import yaml

        directory = self.ctx.model_dir
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.evaluated_weights(), directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.stage), indent=2))
        write_manifest(
            directory, stage="trm", objective=self.objective(), traces=False, think_prefilled=False
        )
        (directory / "recipe.yaml").write_text(yaml.safe_dump(to_dict(self.ctx.recipe), sort_keys=False))

    def evaluate(self) -> dict:
        """Held-out metrics of the saved weights (main process), printed and returned for the summary."""
        if not self.ctx.is_main_process:
            return {}
        model = build_model(self.stage, self.kind)
        model.load_state_dict(self.evaluated_weights())
        held_out = {name: data for name, data in self.splits.items() if name != "train"}
        results = evaluate_model(
            model,
            self.kind,
            held_out,
            self.ctx.directory / "eval",
            eval_steps=default_eval_steps(self.stage),
            trained_steps=self.n_sup,
            tolerance=self.stage.fixed_point_tolerance,
            batch_size=self.stage.eval_batch_size,
            confidence=self.stage.confidence,
        )
        if self.ema is not None:
            # The EMA does not touch training, so the trained weights themselves are the no-EMA ablation
            # of this very run (as if trained with ema: false).
            model.load_state_dict(self._raw_model().state_dict())
            raw = evaluate_split(
                model,
                self.kind,
                held_out["test"],
                eval_steps=[self.n_sup],
                trained_steps=self.n_sup,
                tolerance=self.stage.fixed_point_tolerance,
                batch_size=self.stage.eval_batch_size,
                confidence=self.stage.confidence,
            )
            keys = ("exact_accuracy", "exact_low", "exact_high", "cell_accuracy")
            results["test"]["without_ema"] = {k: raw[k] for k in keys}
        print(
            f"\n{self.ctx.name} (trm, {self.stage.network.mode}):\n" + report(results, self.n_sup), flush=True
        )
        return results

    def cleanup(self, results: dict) -> dict:
        records = self.record.close()
        if records is None:
            return {}
        return {**stage_summary(results, records, self.step, self.objective()), "processes": self.world}


def stage_summary(results: dict, records: list[dict], steps: int, objective: dict) -> dict:
    """What summary.json keeps of the stage: held-out exact accuracy at the trained step count, and the
    TRM's accuracy per test-time step count, halting rules and harder puzzles."""
    test = results["test"]
    summary = {
        "exact_accuracy": test["exact_accuracy"],
        "exact_interval": [test["exact_low"], test["exact_high"]],
        "cell_accuracy": test["cell_accuracy"],
        "valid": test["valid"],
        "n": test["n"],
        "exact_accuracy_by_test_steps": {k: v["exact_accuracy"] for k, v in test["by_steps"].items()},
        "halting": {
            rule: {"average_steps": v["average_steps"], "exact_accuracy": v["exact_accuracy"]}
            for rule, v in test["halting"].items()
        },
        "steps": steps,
        "train_loss": records[-1]["loss"] if records else None,
        "parameters": objective["parameters"],
        "effective_depth": objective["effective_depth_per_supervision_step"],
    }
    if "without_ema" in test:
        summary["exact_accuracy_without_ema"] = test["without_ema"]["exact_accuracy"]
    if "harder" in results:
        harder = results["harder"]
        summary["harder"] = {
            "exact_accuracy": harder["exact_accuracy"],
            "n": harder["n"],
            "exact_accuracy_by_test_steps": {k: v["exact_accuracy"] for k, v in harder["by_steps"].items()},
        }
    return summary


def run_trm(ctx: StageContext, stage: TRMStage, resume: bool = False) -> dict:
    run = TRMRun(ctx, stage, resume=resume)
    run.setup()
    run.train()
    run.save_final()
    results = run.evaluate()
    run.accelerator.wait_for_everyone()
    return run.cleanup(results)
