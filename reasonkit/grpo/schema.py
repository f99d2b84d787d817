"""The ``type: grpo`` section of a recipe, and what makes one that cannot run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import rewards
from reasonkit.config import LoRASettings, Recipe, unknown_key
from reasonkit.engine_settings import VLLMServerSettings, VLLMSettings
from reasonkit.plugins import PluginNotFound
from reasonkit.tools.settings import ToolSettings
from rewards.convention import takes_environments


@dataclass
class RewardSpec:
    # a registry name (`reasonkit rewards list`), package.module:function or path/to/file.py:function
    name: str
    weight: float = 1.0
    # Keyword arguments bound to the function, or passed to it when it is a factory (TRL's get_* rewards).
    args: dict[str, Any] = field(default_factory=dict)
    # How completions reach it: text, or conversational (messages, as TRL's and open-r1's rewards read them);
    # auto: as its `completions` annotation says, else conversational when the prompts are message lists.
    completions: Literal["auto", "text", "conversational"] = "auto"


@dataclass
class GRPOStage:
    """GRPO: sample G completions per prompt, score them, and follow the group-relative advantage; the
    loss is ``grpo_loss``'s (reasonkit/algorithms/losses.py, where it is written out)."""

    type: Literal["grpo"] = "grpo"
    # "model" or the name of an earlier stage to continue from
    init: str = "model"

    # Sampling
    # B, over all processes: each process samples B / (number of processes) of them
    prompts_per_step: int = 16
    # G, completions per prompt
    num_generations: int = 8
    # > 0: the trainer's log-probs are of logits / temperature
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    # Rewards
    # Summed with their weights; a reward returning None does not apply.
    rewards: list[RewardSpec] = field(default_factory=list)
    # Rewards run in worker processes, one completion per call: null = one per CPU (at most 8), 0 = in
    # this process without time limits (debugging). A call over reward_timeout seconds fails.
    reward_workers: int | None = None
    reward_timeout: float = 30.0
    # A completion a reward failed on (raised, timed out, crashed): "exclude" leaves it out of the loss
    # and of its group's mean and std, as if never sampled (a slow but right answer is not punished);
    # "zero" scores it 0 like any other.
    on_reward_failure: Literal["exclude", "zero"] = "exclude"
    # How the `accuracy` metric judges answers; null: math when a reward uses math, else exact_answer.
    accuracy_verifier: Literal["exact_answer", "math"] | None = None

    # Objective: the variants are names in the registries of reasonkit/algorithms/ (or functions of your
    # own as package.module:function); the loss itself: grpo_loss in reasonkit/algorithms/losses.py.
    # group, batch, or none: Dr. GRPO (no std division)
    advantage_scale: str = "group"
    # sequence_mean, token_mean (DAPO) or constant (Dr. GRPO)
    loss_aggregation: str = "sequence_mean"
    epsilon_low: float = 0.2
    # > epsilon_low: DAPO's clip-higher
    epsilon_high: float = 0.2
    # KL coefficient, >= 0; 0 drops the reference model
    beta: float = 0.04
    # k3 (DeepSeekMath, TRL) or k2; what each optimises: reasonkit/algorithms/losses.py. k1 is refused:
    # as a loss term its expected gradient is zero.
    kl_estimator: str = "k3"
    # μ >= 1: optimisation passes over each batch (>1 computes old log-probs)
    num_iterations: int = 1
    # DAPO's overlong filtering: completions cut at max_new_tokens are left out of the loss (they still
    # count in their group's mean and std).
    mask_truncated: bool = False
    # With beta = 0 a completion whose advantage is 0 has no gradient: skip its forward passes. An
    # optimisation only: the losses are normalised over the whole batch, so the update is the same.
    skip_zero_advantage: bool = True

    # Optimiser (AdamW, float32 state; see reasonkit/precision.py)
    # optimisation steps: one batch of B*G completions each, times num_iterations optimizer steps
    max_steps: int = 100
    learning_rate: float = 1e-6
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    # linear warm-up from 0, with every schedule (constant too)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    max_grad_norm: float = 1.0
    # null: full fine-tuning; with LoRA the KL reference is the adapter-free model
    lora: LoRASettings | None = None
    # How a micro-batch's sequences go through the model. packed: concatenated into one row, no padding,
    # fast only with a varlen attention kernel (flash_attention_2); padded: a row per sequence, grouped
    # by length, fast with any kernel. auto: packed with flash_attention_2, else padded.
    micro_batch_layout: Literal["auto", "packed", "padded"] = "auto"
    # Tokens per micro-batch forward, padding included. null: chosen for the kernel, the device, the
    # model's width and vocabulary by micro_batch_shape (reasonkit/grpo/logprobs.py, which says why).
    token_budget: int | None = None

    # Engine
    # auto: vLLM where it is installed, else transformers; vllm_server: vLLM servers of their own
    # (vllm_server.urls); or a class of your own, package.module:Class or path/to/file.py:Class
    # (reasonkit/rollout/base.py says what it must do).
    engine: str = "auto"
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    vllm_server: VLLMServerSettings = field(default_factory=VLLMServerSettings)
    # 1: the next batch is generated while this one trains (one-step-off-policy), sampled whole by the
    # weights of one update earlier (the importance weights below correct for it); engines that generate
    # apart from the trainer (vllm_server) only. 0: generate, then train.
    async_rollouts: int = 0
    # completions (prompts x num_generations) per generate call (transformers engine); at least one
    # prompt's G. What a call holds in memory.
    generation_batch_size: int = 256
    # The sampler's and trainer's log-probs differ (kernels, precision): weight each token's loss by
    # min(π_trainer/π_sampler, importance_cap); null turns the correction off. Engines with their own
    # weights (vLLM) only.
    importance_cap: float | None = 2.0
    # sequence: a length-normalised ratio per completion
    importance_level: Literal["token", "sequence"] = "token"

    # Tools the model may call while it answers (reasonkit/tools/settings.py; docs/tools.md): each
    # completion is then a conversation of the model's turns and the tools' results, trained on the
    # model's tokens only.
    tools: ToolSettings | None = None

    # Bookkeeping
    logging_steps: int = 1
    # A column of the prompt data with a few values (the arithmetic task's `style`, MATH's `level`): reward
    # and accuracy are also logged per value, as `reward/mean/<column>=<value>` and
    # `accuracy/<column>=<value>`, drawn in curves.png beside the whole batch's, and summarised per value.
    metrics_by: str | None = None
    # checkpoint (model, optimizer, scheduler, RNG, data position) every N steps
    save_steps: int = 50
    # null: the recipe's seed
    seed: int | None = None

    def judged_by(self) -> str:
        """The reward that judges answers right or wrong (the accuracy metric; an eval stage's default
        verifier): the recipe's choice, else the one it trains with."""
        if self.accuracy_verifier:
            return self.accuracy_verifier
        uses_math = any(
            r.name == "math" or (r.name == "length_scaled" and r.args.get("verifier", "math") == "math")
            for r in self.rewards
        )
        return "math" if uses_math else "exact_answer"


def validate(name: str, stage: GRPOStage, recipe: Recipe, trained: list[str]) -> list[str]:
    errors = []
    if recipe.model.dtype == "float16":
        errors.append(
            f"stages.{name}: model.dtype float16 cannot train GRPO (it needs loss scaling, which the GRPO "
            "loop does not do); use bfloat16"
        )
    environment = stage.tools is not None and stage.tools.environment_factory is not None
    if not stage.rewards and not environment:  # an environment may own the reward (get_reward)
        errors.append(
            f"stages.{name}.rewards: a GRPO stage needs at least one reward, e.g. [{{name: exact_answer}}]"
        )
    for i, spec in enumerate(stage.rewards):
        try:
            fn = rewards.get(spec.name)
        except rewards.RewardNotFound as exc:
            errors.append(f"stages.{name}.rewards[{i}].name: {exc}")
            continue
        valid = rewards.argument_names(fn)
        for key in spec.args:
            if key not in valid:
                errors.append(unknown_key(f"stages.{name}.rewards[{i}].args", key, valid))
        missing = rewards.registry.missing_factory_args(fn, spec.args)
        if missing:
            errors.append(
                f"stages.{name}.rewards[{i}].args: {spec.name} is a reward factory; give it {missing}"
            )
        if takes_environments(fn):
            errors += _check_environment_reader(f"stages.{name}.rewards[{i}]", spec.name, stage, environment)
    if stage.num_generations < 2:
        errors.append(f"stages.{name}.num_generations: needs at least 2 completions per prompt to compare")
    if stage.epsilon_low < 0 or stage.epsilon_high < 0:
        errors.append(f"stages.{name}: epsilon_low and epsilon_high must be >= 0")
    if stage.temperature <= 0:
        errors.append(
            f"stages.{name}.temperature: {stage.temperature}; GRPO samples, and its log-probs divide the "
            "logits by the temperature: use a value > 0 (1.0 samples the model as it is)"
        )
    if stage.num_iterations < 1:
        errors.append(
            f"stages.{name}.num_iterations: {stage.num_iterations}; at least 1 pass over each batch"
        )
    if stage.importance_cap is not None and stage.importance_cap <= 0:
        errors.append(
            f"stages.{name}.importance_cap: {stage.importance_cap} would zero every token's loss; use a "
            "positive value (2.0 is usual) or null to turn the correction off"
        )
    if stage.beta < 0:
        errors.append(f"stages.{name}.beta: {stage.beta}; the KL coefficient is >= 0 (0 drops the KL term)")
    # The registries live beside the tensor code (torch), and the engines beside theirs: imported here,
    # so that reading a recipe without a GRPO stage imports neither.
    from reasonkit.algorithms import ADVANTAGE_SCALES, KL_ESTIMATORS, LOSS_AGGREGATIONS
    from reasonkit.rollout import check_engine

    errors += _check_kl_estimator(name, stage.kl_estimator, KL_ESTIMATORS)
    for key, registry in (("advantage_scale", ADVANTAGE_SCALES), ("loss_aggregation", LOSS_AGGREGATIONS)):
        errors += _check_variant(name, key, getattr(stage, key), registry)
    errors += check_engine(f"stages.{name}.engine", stage.engine, async_rollouts=stage.async_rollouts)
    if stage.tools is not None:
        from reasonkit.tools.checks import tools_problems  # loads the tools and the tokenizer

        errors += tools_problems(stage.tools, f"stages.{name}.tools", recipe.model.path)
    return errors


def _check_environment_reader(where: str, reward: str, stage: GRPOStage, environment: bool) -> list[str]:
    """A reward that reads ``environments`` needs the stage's instances, alive until its batch is scored."""
    if not environment:
        return [
            f"{where}: {reward} reads `environments` (the instances of TRL's environment_factory); give the "
            "stage tools.environment_factory, or take the parameter out"
        ]
    if stage.async_rollouts:
        return [
            f"{where}: {reward} reads `environments`, which a batch generated ahead (async_rollouts: "
            f"{stage.async_rollouts}) does not keep until it is scored (the next batch resets them): set "
            "async_rollouts: 0, or score in the environment's get_reward(), read as each rollout ends"
        ]
    return []


def _check_kl_estimator(name: str, estimator: str, registry) -> list[str]:
    if estimator == "k1":
        return [
            f"stages.{name}.kl_estimator: k1 as a loss term has zero expected gradient (beta would do "
            "nothing); use k3 (the gradient of KL(ref || policy), as DeepSeekMath and TRL) or k2 (of "
            "KL(policy || ref))"
        ]
    return _check_variant(name, "kl_estimator", estimator, registry)


def _check_variant(name: str, key: str, value: str, registry) -> list[str]:
    """A variant of the objective names a registered one or a function of the user's that loads."""
    try:
        registry.resolve(value)
    except PluginNotFound as exc:
        return [f"stages.{name}.{key}: {exc}"]
    return []
