"""Per-token policy loss, KL estimators and loss aggregation.

All tensors are ``[N, T]`` (N sequences, T completion tokens, right-padded) with a ``response_mask``
of 1 on real completion tokens. Log-probs are of the sampled tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasonkit.plugins import Registry


def clipped_surrogate(
    policy_logprobs: torch.Tensor,  # [N, T], with grad
    old_logprobs: torch.Tensor,  # [N, T], the policy that sampled (or was current) when the batch was made
    advantages: torch.Tensor,  # [N] per sequence, or [N, T] per token
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token: ``-min(ρ A, clip(ρ, 1-ε_low, 1+ε_high) A)``, ρ = exp(policy - old).

    ε_high > ε_low is DAPO's clip-higher. Returns ``(per_token_loss [N, T], clipped [N, T] bool)``, where
    ``clipped`` marks tokens whose gradient the clip removed.
    """
    if advantages.ndim == 1:
        advantages = advantages.unsqueeze(1)  # [N, 1], broadcast over tokens
    ratio = torch.exp(policy_logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * advantages
    per_token_loss = -torch.minimum(unclipped, clipped)
    return per_token_loss, clipped < unclipped


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio**2


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_ratio) - log_ratio - 1


# Estimators of KL(π_θ ‖ π_ref) from samples of π_θ, as functions of log(π_ref / π_θ) per token.
# As a loss term the samples are not differentiated (they came from the sampler), so what the
# penalty optimises is the gradient of the estimate, not of the KL it estimates:
#   k2: E[∇ ½ log² ratio] = E[log(π_θ/π_ref) ∇log π_θ], the gradient of KL(π_θ ‖ π_ref) itself.
#   k3: E[∇ (ratio - log ratio - 1)] = -Σ π_ref ∇log π_θ, the gradient of KL(π_ref ‖ π_θ) (the other
#       direction: mass-covering), which is what DeepSeekMath's GRPO and TRL use.
# k1 (log(π_θ/π_ref), unbiased for the value) has no entry: E[∇log π_θ] = 0, so β would do nothing.
KL_ESTIMATORS: Registry = Registry("KL estimator")
KL_ESTIMATORS.register(
    "k2", _k2
)  # ½ log² ratio: biased for the value, low variance; gradient of KL(π_θ‖π_ref)
KL_ESTIMATORS.register(
    "k3", _k3
)  # exp(ref - pol) - (ref - pol) - 1: unbiased, >= 0 (Schulman); of KL(π_ref‖π_θ)


def kl_penalty(
    policy_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3"
) -> torch.Tensor:
    """Per-token KL estimate ``[N, T]``; k3 by default: ``exp(ref - pol) - (ref - pol) - 1``."""
    return KL_ESTIMATORS.resolve(estimator)(ref_logprobs - policy_logprobs)


def _sequence_mean_token_mean(loss, mask, num_sequences, num_tokens, max_length):
    per_sequence = (loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_sequence.sum() / num_sequences


def _token_mean(loss, mask, num_sequences, num_tokens, max_length):
    return (loss * mask).sum() / num_tokens


def _constant_normaliser(loss, mask, num_sequences, num_tokens, max_length):
    return (loss * mask).sum() / (num_sequences * max_length)


# How per-token losses become one number, by name.
LOSS_AGGREGATIONS: Registry = Registry("loss aggregation")
# GRPO paper: mean over each sequence, then over sequences
LOSS_AGGREGATIONS.register("sequence_mean", _sequence_mean_token_mean)
# DAPO: mean over all tokens of the batch (long answers weigh more)
LOSS_AGGREGATIONS.register("token_mean", _token_mean)
# Dr. GRPO: sum / (sequences x max completion length), no length bias
LOSS_AGGREGATIONS.register("constant", _constant_normaliser)


def aggregate_loss(
    per_token_loss: torch.Tensor,
    response_mask: torch.Tensor,
    mode: str = "sequence_mean",
    *,
    num_sequences: int | None = None,
    num_tokens: int | None = None,
    max_length: int | None = None,
) -> torch.Tensor:
    """Reduce ``[N, T]`` per-token losses to a scalar.

    The normalisers default to this batch's own counts. A trainer that splits a batch into
    micro-batches passes the whole batch's counts (sequences, tokens, and the configured max
    completion length), so that the micro-batch losses add up to exactly the full-batch loss.
    """
    mask = response_mask.to(per_token_loss.dtype)
    num_sequences = num_sequences if num_sequences is not None else per_token_loss.shape[0]
    num_tokens = num_tokens if num_tokens is not None else max(1, int(mask.sum().item()))
    max_length = max_length if max_length is not None else per_token_loss.shape[1]
    return LOSS_AGGREGATIONS.resolve(mode)(per_token_loss, mask, num_sequences, num_tokens, max_length)


@dataclass(frozen=True)
class GRPOLossSettings:
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2  # > epsilon_low: DAPO's clip-higher
    beta: float = 0.0  # KL coefficient
    kl_estimator: str = "k3"  # a KL_ESTIMATORS name
    aggregation: str = "sequence_mean"  # a LOSS_AGGREGATIONS name
    max_length: int | None = None  # the max completion length, for the constant (Dr. GRPO) normaliser


@dataclass
class GRPOLossOutputs:
    loss: torch.Tensor  # scalar, with grad
    kl_sum: torch.Tensor  # scalar: the KL estimate summed over completion tokens (0 without a reference)
    clipped_tokens: torch.Tensor  # scalar: completion tokens whose gradient the clip removed


def grpo_loss(
    policy_logprobs: torch.Tensor,  # [N, T], with grad
    response_mask: torch.Tensor,  # [N, T], 1 on completion tokens
    advantages: torch.Tensor,  # [N]
    settings: GRPOLossSettings,
    *,
    old_logprobs: torch.Tensor | None = None,  # [N, T]; None: on-policy, the policy's own (detached)
    ref_logprobs: torch.Tensor | None = None,  # [N, T]; None: no KL term
    importance_weights: torch.Tensor | None = None,  # [N, T]; None: the sampler is the trainer
    num_sequences: int | None = None,
    num_tokens: int | None = None,
) -> GRPOLossOutputs:
    """The GRPO objective, per token then aggregated:

    ``w · -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) + β·KL(π_θ‖π_ref)``, ρ = exp(policy − old),

    where ``w = min(π_trainer / π_sampler, cap)`` corrects for a sampler whose probabilities differ
    from the trainer's (``correction.truncated_importance_weights``; computed by the caller once per
    batch, from the trainer's view of the sampler's truncated distribution), and the KL estimate is
    ``settings.kl_estimator`` (see ``KL_ESTIMATORS`` for what each one's gradient follows). The sum is
    aggregated by ``settings.aggregation`` with the whole batch's counts (``aggregate_loss``), so the
    losses of a batch's micro-batches add up to the batch's loss.

    >>> zero = torch.zeros(1, 2)
    >>> out = grpo_loss(zero, torch.ones(1, 2), torch.tensor([1.0]), GRPOLossSettings())
    >>> out.loss, out.kl_sum, out.clipped_tokens
    (tensor(-1.), tensor(0.), tensor(0.))
    """
    old = old_logprobs if old_logprobs is not None else policy_logprobs.detach()
    per_token_loss, clipped = clipped_surrogate(
        policy_logprobs, old, advantages, settings.epsilon_low, settings.epsilon_high
    )
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights
    kl_sum = torch.zeros((), device=policy_logprobs.device)
    if ref_logprobs is not None:
        kl = kl_penalty(policy_logprobs, ref_logprobs, settings.kl_estimator)
        per_token_loss = per_token_loss + settings.beta * kl
        kl_sum = (kl.detach() * response_mask).sum()
    loss = aggregate_loss(
        per_token_loss,
        response_mask,
        settings.aggregation,
        num_sequences=num_sequences,
        num_tokens=num_tokens,
        max_length=settings.max_length,
    )
    return GRPOLossOutputs(loss, kl_sum, (clipped.float() * response_mask).sum())
