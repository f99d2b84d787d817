"""The GRPO update on one batch: (reference log-probs when β > 0; old log-probs when μ > 1) → μ
optimisation passes, each one optimizer step over the batch's micro-batches → the engine's weights synced.

The loss is ``grpo_loss`` (reasonkit/algorithms/losses.py); each micro-batch adds its share of the
whole batch's loss (normalised over every completion that trains, on every process), so the gradient
is the batch's whatever the micro-batches and however many processes.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.nn.utils.rnn import pad_sequence

from reasonkit.algorithms import GRPOLossSettings, grpo_loss, mismatch_by_length
from reasonkit.checkpoints import latest_checkpoint
from reasonkit.errors import ReasonkitError
from reasonkit.grpo.batch import Batch, Progress
from reasonkit.grpo.distributed import sum_over_processes
from reasonkit.grpo.logprobs import CompletionLogprobs, completion_logprobs
from reasonkit.grpo.schema import GRPOStage


class TrainingError(ReasonkitError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message says what happened and what was kept."""


@dataclass(eq=False)
class PolicyUpdate:
    """What the update needs of the run (GRPORun builds it once set up; the objects are the run's own,
    so its checkpoints save and restore what the update steps)."""

    accelerator: Accelerator
    policy: torch.nn.Module  # prepared by the accelerator
    ref_model: torch.nn.Module | None  # None: no KL term, or LoRA (the policy with its adapters off)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    stage: GRPOStage
    layout: str  # of the micro-batches (grpo/logprobs.py)
    autocast: Callable[[], contextlib.AbstractContextManager]  # forward passes in the recipe's dtype
    gather: Callable[[list], list]  # every process's values, in process order
    sync_engine: Callable[[], float]  # pushes the policy to the engine; the seconds it took
    progress: Progress  # the step count, for the message when the loss is not finite
    checkpoint_root: Path
    # Completion log-probs under a model (grpo/logprobs.py); a latent model's run the thoughts first
    # (latent/logprobs.py, same signature).
    logprobs: Callable[..., CompletionLogprobs] = completion_logprobs
    world: int = field(init=False)
    loss_settings: GRPOLossSettings = field(init=False)

    def __post_init__(self):
        s = self.stage
        self.world = self.accelerator.num_processes
        self.loss_settings = GRPOLossSettings(
            epsilon_low=s.epsilon_low,
            epsilon_high=s.epsilon_high,
            beta=s.beta,
            kl_estimator=s.kl_estimator,
            aggregation=s.loss_aggregation,
            max_length=s.max_new_tokens,
        )

    def update(self, batch: Batch) -> dict:
        """μ optimisation passes over the batch (none when nothing in it has a gradient); their metrics."""
        s = self.stage
        if not batch.total_sequences or not batch.run_tokens:  # the same decision on every process
            # No update, but the schedule keeps pace with the steps, as when every pass is taken.
            learning_rate = self.scheduler.get_last_lr()[0]
            with warnings.catch_warnings():  # torch warns of a scheduler step without an optimizer step
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(s.num_iterations):
                    self.scheduler.step()
            return {"learning_rate": learning_rate}
        started = time.time()
        self._reference_and_old_logprobs(batch)
        logprob_seconds = time.time() - started
        for _ in range(s.num_iterations):
            train_stats = self._optimise(batch)
        weight_sync_seconds = self.sync_engine()
        return {
            **train_stats,
            "logprob_seconds": logprob_seconds,  # the reference's and the old policy's
            "update_seconds": time.time() - started,  # log-probs, optimisation and weight sync
            "weight_sync_seconds": weight_sync_seconds,
        }

    @torch.no_grad()
    def _reference_and_old_logprobs(self, batch: Batch) -> None:
        def logprobs_of(model):  # in the batch's sequence order (a micro-batch may take them out of it)
            out = [None] * len(batch.sequences)
            for ids, sequences in batch.passes():
                with self.autocast():
                    logprobs = self.logprobs(
                        model, sequences, self.stage.temperature, layout=self.layout
                    ).logprobs
                for i, sequence_logprobs in zip(ids, logprobs):  # none for a filler
                    out[i] = sequence_logprobs
            return out

        if self.stage.beta > 0:
            with self._reference() as reference:
                batch.ref_logprobs = logprobs_of(reference)
        if self.stage.num_iterations > 1:  # the policy before this batch's updates
            batch.old_logprobs = logprobs_of(self.policy)

    @contextlib.contextmanager
    def _reference(self):
        if self.ref_model is not None:
            yield self.ref_model
        else:  # LoRA: the same weights with the adapters switched off
            with self.accelerator.unwrap_model(self.policy).disable_adapter():
                yield self.policy

    def _optimise(self, batch: Batch) -> dict:
        """One optimizer step over the batch, in micro-batches whose losses add up to the batch loss."""
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
        for k, (ids, sequences) in enumerate(batch.passes()):
            last = k == batch.num_passes - 1
            # Gradients are exchanged once, after the last micro-batch: DDP all-reduces on a backward
            # outside no_sync, DeepSpeed reduces and steps at a backward marked as the boundary.
            self.accelerator.gradient_state._set_sync_gradients(last)
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.policy):
                with self.autocast():
                    out = self.logprobs(
                        self.policy,
                        sequences,
                        s.temperature,
                        layout=self.layout,
                        with_entropy=True,
                        truncation=(s.top_p, s.top_k) if first_pass and ids else None,
                    )
                if ids:
                    loss, stats = self._micro_batch_loss(batch, list(ids), out, first_pass)
                else:  # a filler: the same collectives as a real micro-batch, no gradient
                    loss, stats = out.logprobs[0].sum() * 0.0, {}
                self._stop_if_not_finite(loss)
                # DDP and DeepSpeed average gradients over processes; the loss is this process's share
                # of the whole-batch loss, so scale it back up.
                self.accelerator.backward(loss * self.world)
            for key, value in stats.items():
                totals[key] += value
        grad_norm = self.accelerator.clip_grad_norm_(self.policy.parameters(), s.max_grad_norm)
        learning_rate = self.scheduler.get_last_lr()[0]  # the rate this step uses
        self.optimizer.step()
        self.scheduler.step()
        totals = sum_over_processes(self.accelerator, totals)
        # KL, clip fraction and entropy: means over the tokens that ran (with β = 0, not the skipped ones).
        tokens = batch.run_tokens
        mismatch = {}
        if batch.rollout_logprobs is not None:  # over the model's tokens (the sampler sampled those only)
            trainer, sampler, weights = (
                batch.models_tokens(self.gather(values), self.gather(batch.completion_masks))
                for values in (batch.trainer_logprobs, batch.rollout_logprobs, batch.importance_weights)
            )
            mismatch = mismatch_by_length(trainer, sampler, s.max_new_tokens)
            weights = torch.cat(weights)
            mismatch["importance_weight/mean"] = weights.mean().item()
            if s.importance_cap is not None:
                mismatch["importance_weight/capped"] = (weights >= s.importance_cap).float().mean().item()
        return {
            **mismatch,
            "loss": totals["loss"],
            "kl": totals["kl"] / tokens,
            "clip_fraction": totals["clip_fraction"] / tokens,
            "entropy": totals["entropy"] / tokens,
            "grad_norm": float(grad_norm) if grad_norm is not None else math.nan,
            "learning_rate": learning_rate,
            "micro_batches": batch.num_passes,
        }

    def _micro_batch_loss(self, batch: Batch, ids: list[int], out, first_pass: bool):
        """This micro-batch's share of the whole batch's loss, and its sums for the metrics."""
        policy_logprobs = pad_sequence(out.logprobs, batch_first=True)  # [n, T]

        def padded(per_sequence: list[torch.Tensor] | None) -> torch.Tensor | None:  # [n, T]
            if per_sequence is None:
                return None
            return pad_sequence([per_sequence[i] for i in ids], batch_first=True).to(policy_logprobs.device)

        response_mask = pad_sequence([torch.ones_like(lp) for lp in out.logprobs], batch_first=True)
        if batch.completion_masks is not None:  # tool results: attended, left out of everything below
            response_mask = response_mask * padded(batch.completion_masks)
        if first_pass:
            cap = self.stage.importance_cap if self.stage.importance_cap is not None else math.inf
            batch.weigh_against_sampler(
                ids, out.truncated_logprobs, response_mask, cap, self.stage.importance_level
            )

        outputs = grpo_loss(
            policy_logprobs,
            response_mask,
            batch.advantages[ids].to(policy_logprobs.device),
            self.loss_settings,
            old_logprobs=padded(batch.old_logprobs),
            ref_logprobs=padded(batch.ref_logprobs),
            # importance_cap null: the weights are measured (metrics) but not applied
            importance_weights=padded(batch.importance_weights)
            if self.stage.importance_cap is not None
            else None,
            num_sequences=batch.total_sequences,
            num_tokens=batch.total_tokens,
        )
        stats = {
            "loss": outputs.loss.item(),
            "kl": outputs.kl_sum.item(),
            "clip_fraction": outputs.clipped_tokens.item(),
            "entropy": (pad_sequence(out.entropy, batch_first=True) * response_mask).sum().item(),
        }
        return outputs.loss, stats

    def _stop_if_not_finite(self, loss: torch.Tensor) -> None:
        """Raise on every process at once (one process raising alone would leave the others waiting)."""
        bad = torch.tensor(float(not torch.isfinite(loss)), device=self.accelerator.device)
        if self.world > 1:
            bad = self.accelerator.reduce(bad, "sum")
        if bad.item():
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.progress.step + 1}; stopping. The last good "
                f"checkpoint is {latest_checkpoint(self.checkpoint_root) or '(none yet)'}; lower the learning rate or check the rewards."
            )
