"""Correcting for the gap between the sampler's and the trainer's probabilities.

A fast inference engine (vLLM) samples with its own kernels and precision, so the log-probability it
assigns to a sampled token differs from the trainer's for the very same weights. The policy-gradient
update assumes samples from the trainer's distribution; reweighting each token by
``π_trainer / π_sampler`` restores that, and truncating the weight at ``cap`` keeps its variance
bounded (truncated importance sampling).
"""

from __future__ import annotations

import torch

IMPORTANCE_LEVELS = ("token", "sequence")


def truncated_importance_weights(
    trainer_logprobs: torch.Tensor,  # [N, T] the trainer's log-probs of the sampled tokens (no grad)
    sampler_logprobs: torch.Tensor,  # [N, T] the sampler's log-probs of the same tokens
    mask: torch.Tensor,  # [N, T] 1 on completion tokens
    cap: float,
    level: str = "token",
) -> torch.Tensor:
    """``min(π_trainer / π_sampler, cap)`` per token, or per sequence broadcast over its tokens.

    The sequence-level ratio is length-normalised, ``exp(mean_t log ratio)``: a product over tokens
    would shrink or explode with length and mask long completions far more often than short ones.
    """
    # where, not a product: off the mask a truncated trainer log-prob may be -inf (a tool's token)
    log_ratio = torch.where(mask.bool(), trainer_logprobs - sampler_logprobs, 0.0)
    if level == "sequence":
        per_sequence = log_ratio.sum(-1) / mask.sum(-1).clamp(min=1)  # [N]
        log_ratio = per_sequence.unsqueeze(-1).expand_as(log_ratio)
    elif level != "token":
        raise ValueError(f"unknown importance level {level!r}; one of {IMPORTANCE_LEVELS}")
    return log_ratio.exp().clamp(max=cap) * mask


def mismatch_by_length(
    trainer_logprobs: list[torch.Tensor],
    sampler_logprobs: list[torch.Tensor],
    max_length: int,
    buckets: int = 4,
) -> dict[str, float]:
    """Mean |trainer − sampler| log-prob per token, overall and for completions in each length bucket.

    A sampled token outside the trainer's top-p/top-k set has trainer log-prob -inf (and importance
    weight 0): it is counted apart, as ``mismatch/outside_trainer_support`` (share of tokens), and left
    out of the gaps, which would otherwise be infinite.

    >>> mismatch_by_length([torch.tensor([0.0, -float("inf")])], [torch.tensor([-0.5, -3.0])], max_length=4)
    {'mismatch/abs_logprob_gap': 0.5, 'mismatch/outside_trainer_support': 0.5, 'mismatch/abs_logprob_gap_len_2-3': 0.5}
    """
    stats, totals = {}, [[0.0, 0] for _ in range(buckets)]
    outside = 0
    for trainer, sampler in zip(trainer_logprobs, sampler_logprobs):
        bucket = min(buckets - 1, len(trainer) * buckets // max(1, max_length))
        inside = torch.isfinite(trainer)
        outside += int((~inside).sum())
        totals[bucket][0] += (trainer - sampler)[inside].abs().sum().item()
        totals[bucket][1] += int(inside.sum())
    all_gap, all_tokens = sum(t[0] for t in totals), sum(t[1] for t in totals)
    stats["mismatch/abs_logprob_gap"] = all_gap / max(1, all_tokens)
    stats["mismatch/outside_trainer_support"] = outside / max(1, all_tokens + outside)
    for b, (gap, tokens) in enumerate(totals):
        if tokens:
            low, high = b * max_length // buckets, (b + 1) * max_length // buckets
            stats[f"mismatch/abs_logprob_gap_len_{low}-{high}"] = gap / tokens
    return stats
