"""Group-relative advantages.

Rewards arrive laid out group by group: ``rewards[g * G + i]`` is completion i of prompt g.
"""

from __future__ import annotations

import torch

from reasonkit.plugins import Registry


def _masked_mean(values: torch.Tensor, weights: torch.Tensor, dim=None) -> torch.Tensor:
    if dim is None:
        return (values * weights).sum() / weights.sum().clamp(min=1)
    return (values * weights).sum(dim=dim, keepdim=True) / weights.sum(dim=dim, keepdim=True).clamp(min=1)


# Each scale takes the rewards and the valid mask as 0/1 weights, both [B, G]; stds are population stds.


def _group_std(grouped: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # -> [B, 1]
    """std of the group"""
    mean = _masked_mean(grouped, weights, dim=1)
    return _masked_mean((grouped - mean).square(), weights, dim=1).sqrt()


def _batch_std(grouped: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # -> [1, 1]
    """std of the batch"""
    mean = _masked_mean(grouped, weights)
    return _masked_mean((grouped - mean).square(), weights).sqrt().reshape(1, 1)


def _no_scale(grouped: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """1 (Dr. GRPO)"""
    return torch.ones(1, 1, dtype=grouped.dtype, device=grouped.device)


# How the centred rewards are scaled, by name (a recipe's `advantage_scale`; a function of one's own,
# ``fn(grouped [B, G], weights [B, G]) -> [B, 1] or [1, 1]``, as package.module:fn). Each docstring is
# what the objective manifest records.
ADVANTAGE_SCALES: Registry = Registry("advantage scale")
ADVANTAGE_SCALES.register("group", _group_std)  # GRPO: (r - mean_group) / (std_group + eps)
ADVANTAGE_SCALES.register(
    "batch", _batch_std
)  # (r - mean_group) / (std_batch + eps), less noisy for small groups
ADVANTAGE_SCALES.register(
    "none", _no_scale
)  # Dr. GRPO: r - mean_group (no std: up-weights too-easy/too-hard groups)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: str = "group",
    eps: float = 1e-4,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``A_i = (r_i - mean_group) / (std + eps)`` for each completion; returns ``[B*G]``.

    The std is the *population* std (divide by G, not G - 1): the group is the whole set being
    normalised, not a sample from which a wider population's spread is estimated, and with G = 2 the
    sample std would inflate advantages by sqrt(2). A group whose rewards are all equal gets A = 0.

    ``valid`` (``[B*G]`` bool) leaves completions out as if they had not been sampled: means and stds
    are taken over the valid completions only, and an invalid one gets A = 0 (a reward that crashed
    on a completion says nothing about it).

    >>> group_advantages(torch.tensor([1., 0., 1., 1.]), group_size=2)
    tensor([ 0.9998, -0.9998,  0.0000,  0.0000])
    >>> group_advantages(torch.tensor([1., 0., 5.]), group_size=3, valid=torch.tensor([True, True, False]))
    tensor([ 0.9998, -0.9998,  0.0000])
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [B*G] with G={group_size}; got shape {tuple(rewards.shape)}")
    if valid is None:
        valid = torch.ones_like(rewards, dtype=torch.bool)
    grouped = rewards.reshape(-1, group_size)  # [B, G]
    weights = valid.reshape(-1, group_size).to(rewards.dtype)  # [B, G]
    centred = (grouped - _masked_mean(grouped, weights, dim=1)) * weights
    return (centred / (ADVANTAGE_SCALES.resolve(scale)(grouped, weights) + eps)).reshape(-1)
