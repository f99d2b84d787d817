"""The GRPO stage, on accelerate.

Each step: B prompts → G completions each from the rollout engine → rewards (weighted sum of the
recipe's reward functions) → advantages ``(r - mean_group) / (std + eps)`` → (reference log-probs when
β > 0; old log-probs when μ > 1) → μ optimisation passes, each one optimizer step over micro-batches
of at most ``token_budget`` tokens (packed or padded, grpo/logprobs.py; the update: grpo/update.py) →
metrics → checkpoint every ``save_steps``.

The loss is ``grpo_loss`` (reasonkit/algorithms/losses.py, where it is written out), normalised over
every completion of the batch that trains. Completions a reward failed on are left out (``on_reward_failure``),
and with ``mask_truncated`` so are those cut at ``max_new_tokens``. With β = 0, completions whose
advantage is 0 (all of a group whose rewards are equal) have no gradient and are skipped before any
forward pass; the normalisers still count them, so the update is the one without skipping.

A latent model (``latent.json`` beside its weights) is sampled by the latent engine and its log-probs run
its chain of thoughts: what differs is ``self.thinking`` (grpo/thinking.py), chosen once at setup.
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

import rewards as reward_registry
from reasonkit.algorithms import group_advantages
from reasonkit.checkpoints import checkpoint_to_resume, resuming_from, saving_checkpoint
from reasonkit.data import load_prompt_rows, rl_split
from reasonkit.grpo.async_rollouts import RolloutSource, stage_sampling, version_lag_metrics
from reasonkit.grpo.batch import Batch, Progress, PromptSampler, Scored, Selection
from reasonkit.grpo.distributed import check_world, fit_deepspeed_config, prompt_shard
from reasonkit.grpo.logprobs import micro_batch_shape, micro_batches
from reasonkit.grpo.objective import grpo_objective
from reasonkit.grpo.schema import GRPOStage
from reasonkit.grpo.scoring import (
    RewardError,
    RewardScorer,
    check_columns,
    gather_scores,
    load_rewards,
)
from reasonkit.grpo.step_metrics import (
    check_metrics_by,
    mean_present,
    metrics_by_value,
    run_summary,
    step_metrics,
)
from reasonkit.grpo.thinking import thinking_of
from reasonkit.grpo.update import PolicyUpdate
from reasonkit.launch import forget_mixed_precision, process_state
from reasonkit.manifest import write_manifest
from reasonkit.metrics import reward_logs
from reasonkit.models import (
    ensure_distinct_pad,
    load_model,
    load_tokenizer,
    lora_config,
    match_vocabulary,
)
from reasonkit.precision import autocast, autocast_dtype, launch_mixed_precision, load_dtype
from reasonkit.rollout import EngineInputs
from reasonkit.schedule import adamw, scheduler_type
from reasonkit.stage import StageContext, StageRecord, save_stage_model
from reasonkit.tools.generation import generation_for
from reasonkit.tools.loop import tool_metrics, turns_for_log
from rewards.contract import THINK_OPEN
from rewards.convention import TrainerState
from rewards.pool import default_workers

log = logging.getLogger(__name__)


class GRPORun:
    def __init__(self, ctx: StageContext, stage: GRPOStage, resume: bool = False):
        self.ctx, self.stage, self.resume = ctx, stage, resume
        self.record = StageRecord(ctx, stage, "grpo")
        self.seed, self.checkpoint_root = self.record.seed, ctx.checkpoint_root
        self.thinking = thinking_of(ctx.init_path)  # in text, or in latent thoughts before the text
        self.engine_class = self.thinking.engine_class(stage.engine)

    def setup(self) -> None:
        process_state()
        forget_mixed_precision()
        # The scheduler is stepped once per optimizer step. accelerate would step a prepared scheduler
        # once per process for each call (it assumes each process's batch grew the global one), which
        # runs the schedule W times too fast on W processes.
        self.accelerator = Accelerator(
            mixed_precision=launch_mixed_precision(self.ctx.recipe.model.dtype),
            step_scheduler_with_optimizer=False,
        )
        set_seed(self.seed, device_specific=True)  # seed + process index: each process samples its own
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        check_world(self.stage, self.ctx.name, self.world)
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        self.thinking.check_launch(f"stages.{self.ctx.name}", self.world, deepspeed)
        self.deepspeed_config = None
        if deepspeed:
            self.deepspeed_config = self.accelerator.state.deepspeed_plugin.deepspeed_config
            fit_deepspeed_config(
                self.deepspeed_config,
                self.stage,
                self.ctx.name,
                self.world,
                engine_has_own_weights=not self.engine_class.logprobs_are_trainers,
            )
        self._setup_precision()
        self.rewards = load_rewards(self.stage.rewards)
        tools = self.stage.tools
        self.rows = load_prompt_rows(
            self.ctx.recipe.data,
            rl_split(self.ctx.recipe.data),
            prompt_from_environment=tools is not None and tools.environment_factory is not None,
        )
        check_columns(self.rewards, set(self.rows[0]))
        check_metrics_by(self.stage.metrics_by, self.rows)
        self.accuracy_verifier = reward_registry.get(self.stage.judged_by())
        self._setup_model()
        # The tokenizer comes with the model: the tools render through its chat template.
        self.generation = generation_for(
            self.tokenizer, self.fmt.render, self.stage.tools, f"stages.{self.ctx.name}.tools"
        )
        environment_rewards = self.generation.reward_names()
        if not self.rewards and not environment_rewards:
            raise RewardError(
                f"stages.{self.ctx.name}: no reward: name rewards, or give the environment a get_reward() method"
            )
        workers = self.stage.reward_workers
        self.scorer = RewardScorer(
            self.rewards,
            default_workers() if workers is None else workers,
            self.stage.reward_timeout,
            environment_rewards,
        )
        self._setup_optimizer()
        self._place_reference()
        self.sampler, self.progress = PromptSampler(len(self.rows), self.seed), Progress()
        self.accelerator.register_for_checkpointing(self.sampler, self.progress)
        self.engine = self._make_engine()
        self.rollout_source = self._rollout_source()
        self.updater = self._updater()
        self.record.open_log()
        if self.resume:
            self._load_latest_checkpoint()
            self._sync_engine()

    def _setup_precision(self) -> None:
        """float32 master weights and optimizer state; forward passes in the recipe's dtype (precision.py)."""
        dtype, deepspeed = self.ctx.recipe.model.dtype, self.deepspeed_config is not None
        self.load_dtype = load_dtype(dtype, deepspeed=deepspeed, lora=self.stage.lora is not None)
        self.autocast_dtype = autocast_dtype(dtype, deepspeed=deepspeed)

    def _autocast(self):
        return autocast(self.accelerator.device, self.autocast_dtype)

    def _make_engine(self):
        s = self.stage
        return self.engine_class.from_inputs(
            EngineInputs(
                self.ctx.init_path,
                self.tokenizer,
                dtype=self.ctx.recipe.model.dtype,
                seed=self.seed + self.rank,  # each process samples its own noise
                batch_size=s.generation_batch_size,
                vllm=s.vllm,
                vllm_server=s.vllm_server,
                process_index=self.rank,
                num_processes=self.world,
                model=self.accelerator.unwrap_model(self.policy),
                generation_context=self._policy_for_generation,
            )
        )

    def _rollout_source(self) -> RolloutSource:
        s = self.stage

        def draw() -> list[dict]:  # this process's share of the next step's prompts
            shard = prompt_shard(self.sampler.next(s.prompts_per_step), self.rank, self.world)
            return [self.rows[i] for i in shard]

        return RolloutSource(
            self.engine,
            draw,
            self.generation,
            stage_sampling(s),
            s.async_rollouts,
            # An engine sampling the policy in place draws from the trainer's random state, which
            # checkpoints keep; another one is seeded batch by batch, so a resumed run samples the same.
            seed=None if self.engine.logprobs_are_trainers else self.seed,
            process=self.rank,
            processes=self.world,
        )

    def _updater(self) -> PolicyUpdate:
        return PolicyUpdate(
            self.accelerator,
            self.policy,
            self.ref_model,
            self.optimizer,
            self.scheduler,
            self.stage,
            self.layout,
            autocast=self._autocast,
            gather=self._gather,
            sync_engine=self._sync_engine,
            progress=self.progress,
            checkpoint_root=self.checkpoint_root,
            logprobs=self.thinking.logprobs(),
        )

    @contextlib.contextmanager
    def _policy_for_generation(self):
        """The policy as an engine sampling it in place needs it: unwrapped, gathered under ZeRO-3, and
        in the training precision."""
        from trl.models.utils import unwrap_model_for_generation

        with unwrap_model_for_generation(self.policy, self.accelerator) as model, self._autocast():
            yield model

    def _sync_engine(self) -> float:
        """Push the policy's weights to an engine that holds its own; the seconds it took."""
        started = time.time()
        self.rollout_source.settle()  # a batch is sampled whole by one version of the weights
        self.engine.sync_weights(self.accelerator.unwrap_model(self.policy))
        return time.time() - started

    def _setup_model(self) -> None:
        model_cfg = self.ctx.recipe.model
        self.tokenizer = load_tokenizer(self.ctx.init_path)
        model = load_model(self.ctx.init_path, self.load_dtype, model_cfg.attn_implementation)
        ensure_distinct_pad(self.tokenizer, model)
        self.fmt = self.thinking.prompt_format(self.tokenizer, model_cfg.think_prefill)
        # The KL reference is the starting policy, frozen: with LoRA, the policy with its adapters
        # disabled (no second copy); else a copy, sharded too under ZeRO-3.
        self.ref_model = None
        if self.stage.lora:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(self.stage.lora))
        elif self.stage.beta > 0:
            # Loaded again rather than deep-copied: DeepSpeed cannot shard a deep copy under ZeRO-3.
            self.ref_model = load_model(self.ctx.init_path, self.load_dtype, model_cfg.attn_implementation)
            match_vocabulary(self.tokenizer, self.ref_model)  # the pad row the policy may have been given
            self.ref_model.eval().requires_grad_(False)
        self.policy = model
        self.layout, self.token_budget = micro_batch_shape(
            self.thinking.micro_batch_layout(self.stage.micro_batch_layout),
            self.stage.token_budget,
            model_cfg.attn_implementation,
            self.accelerator.device.type,
            model.config.hidden_size,
            model.config.vocab_size,
        )

    def _place_reference(self) -> None:
        """After the policy is prepared (DeepSpeed's config is complete then)."""
        if self.ref_model is None:
            return
        if self._zero_stage() == 3:
            from trl.models.utils import prepare_deepspeed

            self.ref_model = prepare_deepspeed(self.ref_model, self.accelerator)
        else:
            self.ref_model = self.ref_model.to(self.accelerator.device)

    def _zero_stage(self) -> int | None:
        return self.deepspeed_config["zero_optimization"]["stage"] if self.deepspeed_config else None

    def _setup_optimizer(self) -> None:
        s = self.stage
        optimizer = adamw(
            [p for p in self.policy.parameters() if p.requires_grad],  # LoRA: the adapters only
            lr=s.learning_rate,
            betas=(s.adam_beta1, s.adam_beta2),
            weight_decay=s.weight_decay,
        )
        scheduler = get_scheduler(
            scheduler_type(s.lr_scheduler, s.warmup_steps),
            optimizer,
            num_warmup_steps=s.warmup_steps,
            num_training_steps=s.max_steps * s.num_iterations,
        )
        self.policy, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.policy, optimizer, scheduler
        )

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
                if self.progress.step % s.logging_steps == 0:
                    self.record.log(self.progress.step, metrics)
                if self.progress.step % s.save_steps == 0 and self.progress.step < s.max_steps:
                    self.save_checkpoint()

    def _step(self) -> dict:
        started = time.time()
        generated = self.rollout_source.next(steps_left=self.stage.max_steps - self.progress.step)
        lags = version_lag_metrics(self._gather(generated.weight_version_lags))  # before this step's push
        generation_done = time.time()
        metrics = self.learn(generated.rows, generated.rollouts)
        seconds = time.time() - started
        return {
            **metrics,
            **lags,
            "tokens_per_second": metrics.pop("tokens") / seconds,
            # async_rollouts > 0: only the wait for a batch generated while earlier steps trained
            "generation_seconds": generation_done - started,
            "step_seconds": seconds,
        }

    def learn(self, rows: list[dict], rollouts: list) -> dict:
        """Score this process's ``rollouts`` (G per row, row by row), then one GRPO update on the whole
        batch over every process; its metrics."""
        started = time.time()
        scored = self._score(rows, rollouts)
        scoring_seconds = time.time() - started
        selection = self._select(scored, rollouts)
        train_stats = self.updater.update(self._build_batch(rollouts, selection))
        return {**self._metrics(scored, selection, rollouts, train_stats), "scoring_seconds": scoring_seconds}

    def _score(self, rows: list[dict], rollouts: list) -> Scored:
        """Every reward on every completion, gathered over processes (rewards are TRL's convention)."""
        s, G = self.stage, self.stage.num_generations
        # Rewards see the whole response: the <think> a template prefilled is put back in front.
        completions = [(THINK_OPEN if self.fmt.think_prefilled else "") + r.text for r in rollouts]
        group_rows = [row for row in rows for _ in range(G)]  # aligned with rollouts
        columns = {k: [row[k] for row in group_rows] for k in group_rows[0] if k != "prompt"}
        columns["completion_ids"] = [r.completion_ids for r in rollouts]
        columns["max_new_tokens"] = [s.max_new_tokens] * len(rollouts)
        columns["trainer_state"] = TrainerState(  # TRL's, one for the batch
            self.progress.step, s.max_steps, self.progress.step * s.prompts_per_step / len(self.rows)
        )
        prompts = [row["prompt"] for row in group_rows]
        uses = [r.tools for r in rollouts]
        environment_rewards = [use.environment_reward if use else None for use in uses]
        environments = [use.environment if use else None for use in uses]
        scores = self.scorer.score(prompts, completions, columns, environment_rewards, environments)
        scores = gather_scores(scores, self._gather, self.world)
        logged, completions_table = reward_logs(self.scorer.pool.logs, self._gather, prompts, completions)
        if self.stage.tools is not None:  # every turn of every completion
            completions_table = completions_table or {
                "prompt": self._gather(prompts),
                "completion": self._gather(completions),
            }
            completions_table["turns"] = self._gather([turns_for_log(use) if use else [] for use in uses])
        if self.record.metrics_log and completions_table:  # tool turns, or a reward's log_extra columns
            self.record.metrics_log.log_completions(self.progress.step + 1, completions_table)
        return Scored(prompts, completions, columns, scores, logged)

    def _select(self, scored: Scored, rollouts: list) -> Selection:
        """Advantages, and which completions train and which run, over the whole batch."""
        s = self.stage
        lengths = torch.tensor(self._gather([r.models_tokens for r in rollouts]), dtype=torch.float32)
        truncated = torch.tensor(self._gather([r.truncated for r in rollouts]), dtype=torch.bool)
        nothing = torch.zeros_like(truncated)
        excluded = scored.scores.failed_samples if s.on_reward_failure == "exclude" else nothing
        advantages = group_advantages(
            scored.scores.total, s.num_generations, scale=s.advantage_scale, valid=~excluded
        )
        trains = ~excluded & ~(truncated if s.mask_truncated else nothing)
        # The loss is normalised over every completion that trains, so leaving out those without
        # gradient (β = 0 and A = 0) changes no number, only saves their forward passes.
        runs = trains & (advantages != 0) if s.beta == 0 and s.skip_zero_advantage else trains
        return Selection(advantages, lengths, truncated, excluded, trains, runs)

    def _build_batch(self, rollouts: list, selection: Selection) -> Batch:
        """This process's completions that run, in micro-batches, with the whole batch's normalisers."""
        mine = slice(self.rank * len(rollouts), (self.rank + 1) * len(rollouts))
        kept = selection.runs[mine].nonzero().squeeze(1).tolist()
        sequences = [(rollouts[i].prompt_ids, rollouts[i].completion_ids) for i in kept]
        lengths = [len(p) + len(c) for p, c in sequences]
        batches = micro_batches(lengths, self.token_budget, self.layout)
        batch = Batch(
            sequences,
            selection.advantages[mine][kept],
            batches,
            total_sequences=int(selection.trains.sum()),
            total_tokens=int(selection.lengths[selection.trains].sum()),
            run_tokens=int(selection.lengths[selection.runs].sum()),
            num_passes=max(self._gather([len(batches)])),
            filler=(rollouts[0].prompt_ids, rollouts[0].completion_ids),
        )
        if not self.engine.logprobs_are_trainers:
            batch.rollout_logprobs = [torch.tensor(rollouts[i].rollout_logprobs) for i in kept]
        if self.stage.tools is not None:
            batch.completion_masks = [torch.tensor(rollouts[i].tools.mask, dtype=torch.float32) for i in kept]
        return batch

    def _metrics(self, scored: Scored, selection: Selection, rollouts: list, train_stats: dict) -> dict:
        prompt_tokens = sum(self._gather([len(r.prompt_ids) for r in rollouts]))
        metrics = {
            **step_metrics(scored, selection, self.stage.num_generations, prompt_tokens),
            **train_stats,
        }
        if self.stage.tools is not None:
            uses = self._gather([r.tools.counts() for r in rollouts])
            metrics.update(tool_metrics(uses, self.generation.tool_names))
        judged = None
        if "answer" in scored.columns:
            correct = self.accuracy_verifier(
                scored.prompts, scored.completions, answer=scored.columns["answer"]
            )
            # A gold answer the verifier cannot read (None) says nothing about the completion.
            judged = self._gather([None if score is None else float(score == 1.0) for score in correct])
            metrics["accuracy"] = mean_present(judged)
        if self.stage.metrics_by:
            rewards = [
                None if left_out else reward
                for reward, left_out in zip(scored.scores.total.tolist(), selection.excluded.tolist())
            ]
            values = self._gather(scored.columns[self.stage.metrics_by])
            metrics.update(metrics_by_value(self.stage.metrics_by, values, rewards, judged))
        return metrics

    def _gather(self, values: list) -> list:
        """Every process's ``values``, concatenated in process order (= the batch's order)."""
        return gather_object(list(values)) if self.world > 1 else list(values)

    def objective(self) -> dict:
        return (
            grpo_objective(self.stage, self.rewards, self.engine.logprobs_are_trainers)
            | self.thinking.describe()
        )

    def save_checkpoint(self) -> None:
        """Model, optimizer, scheduler, RNG states, data position and the batches generated ahead, so a
        resumed run continues exactly; visible only once whole (checkpoints.py)."""

        def manifest(directory):
            write_manifest(
                directory,
                stage="grpo",
                objective=self.objective(),
                traces=True,
                think_prefilled=self.fmt.think_prefilled,
            )

        with saving_checkpoint(
            self.checkpoint_root, self.progress.step, self.accelerator, manifest
        ) as partial:
            self.accelerator.save_state(str(partial))
            torch.save(self.rollout_source.state_dict(), partial / f"rollouts-{self.rank}.pt")

    def _load_latest_checkpoint(self) -> None:
        latest = checkpoint_to_resume(self.checkpoint_root, self.accelerator)
        if latest is None:
            return
        with resuming_from(latest):
            self.accelerator.load_state(str(latest))
            self.rollout_source.load_state_dict(
                torch.load(latest / f"rollouts-{self.rank}.pt", weights_only=False)
            )
        self.record.resumed_at(self.progress.step)
        log.info("resumed from %s (step %d)", latest, self.progress.step)

    def save_final(self) -> None:
        state_dict = self.accelerator.get_state_dict(self.policy)  # every process: gathers ZeRO-3 shards
        if self.ctx.is_main_process:
            save_stage_model(
                self.ctx,
                self.tokenizer,
                model=self.accelerator.unwrap_model(self.policy),
                state_dict=state_dict,
                objective=self.objective(),
                traces=True,
                think_prefilled=self.fmt.think_prefilled,
                save_merged=bool(self.stage.lora and self.stage.lora.save_merged),
            )
            self.thinking.save(self.ctx.model_dir)
        self.accelerator.wait_for_everyone()

    def cleanup(self) -> dict:
        records = self.record.close()
        if records is None:
            return {}
        return run_summary(records, self.progress.step, self.stage.metrics_by)


def run_grpo(ctx: StageContext, stage: GRPOStage, resume: bool = False) -> dict:
    run = GRPORun(ctx, stage, resume=resume)
    try:
        run.setup()
        run.train()
        run.save_final()
        return run.cleanup()
    finally:
        if hasattr(run, "rollout_source"):
            run.rollout_source.close()
        if hasattr(run, "scorer"):
            run.scorer.close()
