"""The ``type: latent`` stage's trainer: the continuous-thought curriculum on (x, t, y), then evaluation.

Curriculum stage k = 1..max_stage (first_stage..max_stage when continuing an earlier latent stage) runs
``steps_per_stage`` optimizer steps on batches drawn by ``data.draw`` (the first k steps of each trace
replaced by k*c thoughts, a share of rows at earlier stages), each one forward chain (``thoughts.chain_forward``) and one backward; a fresh AdamW and schedule
at each stage (``reset_optimizer``). Loss: summed cross-entropy over the tokens after ``<|eot|>`` divided
by the global batch's count of such tokens, so the update is the same on any number of processes.

Several processes: each holds B/W rows of every batch. The model is not wrapped in DDP: a chain calls the
model k*c + 1 times before one backward, which DDP's reducer does not expect; the gradients are summed
over processes by one all-reduce after the backward instead (each process's loss is already divided by
the global token count, so the sum is the one-process gradient). DeepSpeed launches are refused.

After each stage (or the last only) the main process evaluates the model as it is on the recipe's test
problems with the thoughts of that stage (``models.latent_stageK`` in the summary: pass@1 and generated
tokens) and decodes its thoughts (``diagnostics.py``). Checkpoints (``save_steps``, and each stage's end)
hold the weights, optimizer, schedule and position in the curriculum: a resumed run draws the batches it
would have. The model saved in ``model/`` thinks like the last stage (``latent.json``).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch
from tqdm import tqdm

from reasonkit.checkpoints import check_same_world, checkpoint_to_resume, resuming_from, saving_checkpoint
from reasonkit.data import DataError, PromptFormat, load_examples
from reasonkit.errors import ReasonkitError
from reasonkit.latent.data import CurriculumExample, build_batch, draw, thoughts_at
from reasonkit.latent.engine import LatentEngine, LatentSettings, write_latent_settings
from reasonkit.latent.schema import LatentStage, inference_thoughts, objective
from reasonkit.latent.splitters import SPLITTERS
from reasonkit.latent.thoughts import add_thought_tokens, chain_forward, completion_loss_sum
from reasonkit.launch import forget_mixed_precision, process_state, uses_deepspeed
from reasonkit.manifest import write_manifest
from reasonkit.models import ensure_distinct_pad, load_model, load_tokenizer, lora_config
from reasonkit.precision import autocast, autocast_dtype, load_dtype
from reasonkit.schedule import adamw
from reasonkit.stage import StageContext, StageRecord, save_stage_model
from reasonkit.trm.model import learning_rate_factor
from rewards.contract import THINK_CLOSE

log = logging.getLogger(__name__)


class LatentError(ReasonkitError, RuntimeError):
    pass


def model_name(stage: LatentStage, k: int) -> str:
    """The name a curriculum stage's model has in the summary: latent_stageK (pause_stageK for pause tokens)."""
    return f"{'latent' if stage.thoughts == 'continuous' else 'pause'}_stage{k}"


class LatentRun:
    def __init__(self, ctx: StageContext, stage: LatentStage, resume: bool = False):
        self.ctx, self.stage, self.resume = ctx, stage, resume
        self.record = StageRecord(ctx, stage, "latent")
        self.seed = self.record.seed
        self.metrics: dict = {"models": {}}
        self.curriculum_stage, self.stage_step, self.step = stage.first_stage, 0, 0
        self.evaluated: set[int] = set()

    def setup(self) -> None:
        from accelerate.utils import set_seed

        if uses_deepspeed():
            raise LatentError(
                f"stages.{self.ctx.name}: the latent stage runs on DDP-style launches only (no DeepSpeed): its "
                "chain of thoughts calls the model several times per step. Launch it without a DeepSpeed config"
            )
        self.state = process_state()
        forget_mixed_precision()
        self.world, self.rank = self.state.num_processes, self.state.process_index
        if self.stage.batch_size % self.world:
            raise LatentError(
                f"stages.{self.ctx.name}.batch_size {self.stage.batch_size} is not divisible by {self.world} processes"
            )
        set_seed(self.seed)
        self._setup_model()
        self.examples = self._setup_examples()
        self.record.open_log()
        self._new_optimizer()
        if self.resume:
            self._load_latest_checkpoint()

    def _setup_model(self) -> None:
        model_cfg, s = self.ctx.recipe.model, self.stage
        self.tokenizer = load_tokenizer(self.ctx.init_path)
        dtype = load_dtype(model_cfg.dtype, deepspeed=False, lora=s.lora is not None)
        model = load_model(self.ctx.init_path, dtype, model_cfg.attn_implementation)
        ensure_distinct_pad(self.tokenizer, model)
        self.tokens = add_thought_tokens(self.tokenizer, model)
        if s.lora:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(s.lora))
        self.model = model.to(self.state.device)
        self.autocast_dtype = autocast_dtype(model_cfg.dtype, deepspeed=False)
        # Latent models are prompted with the think block open: <|bot|> follows <think> directly.
        self.fmt = PromptFormat(think_prefilled=True)

    def _setup_examples(self) -> list[CurriculumExample]:
        split = SPLITTERS.resolve(self.stage.splitter)
        examples, report = load_examples(self.ctx.recipe.data, "train", need_trace=True)
        longest_thoughts = inference_thoughts(self.stage)
        kept, dropped, steps = [], 0, []
        for ex in examples:
            prefix = self.tokenizer(self.fmt.render(self.tokenizer, ex.prompt), add_special_tokens=False)
            parts = split(ex.trace)
            full = self.tokenizer(" ".join(parts) + THINK_CLOSE + ex.answer, add_special_tokens=False)
            if (
                len(prefix["input_ids"]) + len(full["input_ids"]) + longest_thoughts + 3
                > self.stage.max_length
            ):
                dropped += 1
                continue
            kept.append(CurriculumExample(prefix["input_ids"], parts, ex.answer))
            steps.append(len(parts))
        if not kept:
            raise DataError(
                f"stages.{self.ctx.name}: no example fits in max_length={self.stage.max_length} tokens; raise it"
            )
        fewer = sum(n < self.stage.max_stage for n in steps)
        if fewer:
            log.warning(
                "%d of %d traces have fewer than max_stage=%d steps (by the %s splitter): at the stages beyond "
                "their length all their steps are replaced by thoughts, as in the reference",
                fewer, len(kept), self.stage.max_stage, self.stage.splitter,
            )  # fmt: skip
        self.metrics.update(
            examples=len(kept),
            skipped_invalid=report.skipped,
            dropped_too_long=dropped,
            mean_trace_steps=sum(steps) / len(steps),
            traces_shorter_than_max_stage=fewer,
        )
        return kept

    def _new_optimizer(self) -> None:
        s = self.stage
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adamw(
            trained, lr=s.learning_rate, betas=(s.adam_beta1, s.adam_beta2), weight_decay=s.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: learning_rate_factor(step, s.warmup_steps, s.steps_per_stage, s.lr_scheduler),
        )

    def train(self) -> None:
        s = self.stage
        total = (s.max_stage - s.first_stage + 1) * s.steps_per_stage
        with tqdm(
            total=total, initial=self.step, desc=f"latent {self.ctx.name}", unit="step",
            disable=not self.ctx.is_main_process,
        ) as bar:  # fmt: skip
            while self.curriculum_stage <= s.max_stage:
                k = self.curriculum_stage
                while self.stage_step < s.steps_per_stage:
                    metrics = self._step(k)
                    self.stage_step += 1
                    self.step += 1
                    bar.update(1)
                    if self.step % s.logging_steps == 0 or self.stage_step == s.steps_per_stage:
                        bar.set_postfix(stage=k, loss=f"{metrics['loss']:.3f}")
                        self.record.log(self.step, metrics)
                    if s.save_steps and self.step % s.save_steps == 0 and self.stage_step < s.steps_per_stage:
                        self.save_checkpoint()
                if (s.eval.every_stage or k == s.max_stage) and k not in self.evaluated:
                    self.evaluate_stage(k)
                self.curriculum_stage, self.stage_step = k + 1, 0
                if s.reset_optimizer:
                    self._new_optimizer()
                if s.save_steps and k < s.max_stage:
                    self.save_checkpoint()

    def _step(self, k: int) -> dict:
        s = self.stage
        indices, stages = draw(len(self.examples), s.batch_size, k, self.stage_step, self.seed, s.mix_earlier)
        share = s.batch_size // self.world
        mine = slice(self.rank * share, (self.rank + 1) * share)
        batch = build_batch(
            [self.examples[i] for i in indices[mine]], stages[mine], self.tokenizer, self.tokens,
            s.thoughts_per_step, THINK_CLOSE,
        )  # fmt: skip
        device = self.state.device
        self.model.train()
        with autocast(device, self.autocast_dtype):
            out = chain_forward(
                self.model,
                batch.input_ids.to(device),
                batch.attention_mask.to(device),
                batch.thought_mask.to(device),
                batch.bot_column,
                feedback=s.thoughts == "continuous",
                normalise=s.normalise_thoughts,
            )
        loss_sum, count = completion_loss_sum(out.logits, batch.labels.to(device))
        # Summed over processes below: each divides by the global count, so the sum is the global mean.
        totals = self._sum_over_processes([count, loss_sum.item(), batch.short_traces, len(batch.stages)])
        global_count, global_loss, short, rows = totals
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum / global_count).backward()
        self._sum_gradients()
        trained = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, s.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        metrics = {
            "loss": global_loss / global_count,
            "curriculum_stage": k,
            "tokens": global_count,
            "short_traces": short / rows,
            "passes": out.passes,
            "grad_norm": float(grad_norm),
            "learning_rate": self.scheduler.get_last_lr()[0],
        }
        if out.thoughts.numel() and s.thoughts == "continuous":
            metrics["thought_norm"] = out.thoughts.detach().norm(dim=-1).mean().item()
        return metrics

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return [float(v) for v in values]
        totals = torch.tensor(values, dtype=torch.float64, device=self.state.device)
        torch.distributed.all_reduce(totals)
        return totals.tolist()

    def _sum_gradients(self) -> None:
        if self.world == 1:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def settings_at(self, k: int) -> LatentSettings:
        s = self.stage
        return LatentSettings(
            thoughts=thoughts_at(k, s.thoughts_per_step),
            feedback=s.thoughts == "continuous",
            normalise=s.normalise_thoughts,
        )

    def evaluate_stage(self, k: int) -> None:
        """Held-out pass@1 and generated tokens with stage k's thoughts, and what the thoughts decode to
        (main process; the others wait)."""
        self.evaluated.add(k)
        if self.ctx.is_main_process:
            from reasonkit.latent.evaluate import evaluate_in_training

            name = model_name(self.stage, k)
            engine = LatentEngine(self.model, self.tokenizer, self.settings_at(k))
            result = evaluate_in_training(self.ctx, self.stage, engine, self.fmt, name)
            self.metrics["models"][name] = {"test": result}
            self.record.log(
                self.step,
                {
                    "eval_pass@1": result["pass@1"]["value"],
                    "eval_generated_tokens": result["generated_tokens"],
                },
            )
        self.state.wait_for_everyone()

    def _write_manifest(self, directory) -> None:
        write_manifest(
            directory, stage="latent", objective=objective(self.stage), traces=True, think_prefilled=True
        )

    def save_checkpoint(self) -> None:
        with saving_checkpoint(
            self.ctx.checkpoint_root, self.step, self.state, self._write_manifest
        ) as partial:
            if self.ctx.is_main_process:
                torch.save(
                    {
                        "model": self.model.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "position": (self.curriculum_stage, self.stage_step, self.step),
                        "evaluated": sorted(self.evaluated),
                        "models": self.metrics["models"],
                        "world": self.world,
                    },
                    partial / "state.pt",
                )

    def _load_latest_checkpoint(self) -> None:
        latest = checkpoint_to_resume(self.ctx.checkpoint_root, self.state)
        if latest is None:
            return
        with resuming_from(latest):
            state = torch.load(latest / "state.pt", weights_only=False)
            check_same_world(latest, state["world"], self.world)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.curriculum_stage, self.stage_step, self.step = state["position"]
            self.evaluated, self.metrics["models"] = set(state["evaluated"]), state["models"]
        self.record.resumed_at(self.step)
        log.info("resumed from %s (curriculum stage %d, step %d)", latest, self.curriculum_stage, self.step)

    def save_final(self) -> None:
        if not self.ctx.is_main_process:
            return
        model = self.model.merge_and_unload() if self.stage.lora else self.model
        save_stage_model(
            self.ctx,
            self.tokenizer,
            model=model,
            objective=objective(self.stage),
            traces=True,
            think_prefilled=True,
        )
        write_latent_settings(self.ctx.model_dir, self.settings_at(self.stage.max_stage))

    def cleanup(self) -> dict:
        records = self.record.close()
        if records is None:
            return {}
        losses = [r["loss"] for r in records if "loss" in r]
        if losses:
            self.metrics.update(
                train_loss=losses[-1], first_logged_loss=losses[0], last_logged_loss=losses[-1]
            )
        if self.ctx.is_main_process and self.metrics["models"]:
            from reasonkit.latent.diagnostics import plot_thoughts

            plot_thoughts(self.ctx.directory / "diagnostics")
        return {
            **self.metrics,
            "steps": self.step,
            "processes": self.world,
            "stage_settings": dataclasses.asdict(self.stage),
        }


def run_latent(ctx: StageContext, stage: LatentStage, resume: bool = False) -> dict:
    run = LatentRun(ctx, stage, resume=resume)
    run.setup()
    started = time.time()
    run.train()
    run.metrics["train_seconds"] = round(time.time() - started, 1)
    run.save_final()
    run.state.wait_for_everyone()
    return run.cleanup()
