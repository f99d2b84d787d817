"""What a GRPO stage optimises, from its settings alone (no model, no accelerator): the objective that
manifests record and `--dry-run` prints."""

from __future__ import annotations

from reasonkit.algorithms import ADVANTAGE_SCALES
from reasonkit.config import lora_summary
from reasonkit.grpo.schema import GRPOStage
from reasonkit.rollout import engine_class


def stage_objective(stage: GRPOStage) -> dict:
    """The objective from the recipe's settings alone (the dry run's and trackers')."""
    from reasonkit.grpo.scoring import load_rewards

    return grpo_objective(
        stage, load_rewards(stage.rewards), engine_class(stage.engine).logprobs_are_trainers
    )


def grpo_objective(stage: GRPOStage, rewards: list, logprobs_are_trainers: bool) -> dict:
    """``rewards``: the stage's WeightedRewards (names made unique, arguments bound)."""
    s = stage
    std = ADVANTAGE_SCALES.resolve(s.advantage_scale).__doc__
    return {
        "algorithm": "grpo",
        "advantage": f"(r - mean of the group of {s.num_generations}) / ({std} + 1e-4), population std",
        "loss": "-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) + beta * KL, per token",
        "loss_aggregation": s.loss_aggregation,
        "loss_normalised_over": "every completion of the batch that trains, skipped ones included",
        "clip": {"epsilon_low": s.epsilon_low, "epsilon_high": s.epsilon_high},
        "kl": {
            "estimator": s.kl_estimator,
            "beta": s.beta,
            "reference": "the policy with LoRA adapters disabled"
            if s.lora
            else "frozen copy of the initial policy",
        },
        "num_iterations": s.num_iterations,
        "lora": lora_summary(s.lora),
        "correction": _correction(s, logprobs_are_trainers),
        "off_policy": "each batch sampled whole by the weights of one update earlier (async_rollouts)"
        if s.async_rollouts
        else "on-policy: each batch sampled by the weights it trains",
        "sampling": {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "max_new_tokens": s.max_new_tokens,
        },
        "rewards": [{"name": r.name, "weight": r.weight, "args": r.call.args} for r in rewards],
        "reward_failures": "left out of the loss and of group statistics"
        if s.on_reward_failure == "exclude"
        else "scored 0",
        "truncated_completions": "left out of the loss (overlong filtering)"
        if s.mask_truncated
        else "trained",
        "zero_advantage_completions": "skipped (no gradient with beta = 0; normalisers unchanged)"
        if s.beta == 0 and s.skip_zero_advantage
        else "run",
    }


def _correction(stage: GRPOStage, logprobs_are_trainers: bool) -> str:
    if logprobs_are_trainers:
        return "none: the sampler is the policy itself"
    if stage.importance_cap is None:
        return "none (importance_cap: null)" + (
            " — async_rollouts samples are not corrected" if stage.async_rollouts else ""
        )
    return f"truncated importance weights per {stage.importance_level}, cap {stage.importance_cap}"
