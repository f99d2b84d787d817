"""Group-relative advantages.

Rewards arrive laid out group by group: ``rewards[g * G + i]`` is completion i of prompt g.
"""

from __future__ import annotations

import torch


def _group_std(grouped: torch.Tensor) -> torch.Tensor:  # [B, G] -> [B, 1]
    return grouped.std(dim=1, keepdim=True, unbiased=False)


def _batch_std(grouped: torch.Tensor) -> torch.Tensor:  # [B, G] -> [1, 1]
    return grouped.std(unbiased=False).reshape(1, 1)


def _no_scale(grouped: torch.Tensor) -> torch.Tensor:
    return torch.ones(1, 1, dtype=grouped.dtype, device=grouped.device)


# How the centred rewards are scaled, by name.
ADVANTAGE_SCALES = {
    "group": _group_std,  # GRPO: (r - mean_group) / (std_group + eps)
    "batch": _batch_std,  # (r - mean_group) / (std_batch + eps), less noisy for small groups
    "none": _no_scale,  # Dr. GRPO: r - mean_group (no std: it up-weights too-easy/too-hard groups)
}


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """``A_i = (r_i - mean_group) / (std + eps)`` for each completion; returns ``[B*G]``.

    The std is the *population* std (divide by G, not G - 1): the group is the whole set being
    normalised, not a sample from which a wider population's spread is estimated, and with G = 2 the
    sample std would inflate advantages by sqrt(2). A group whose rewards are all equal gets A = 0.

    >>> group_advantages(torch.tensor([1., 0., 1., 1.]), group_size=2)
    tensor([ 0.9998, -0.9998,  0.0000,  0.0000])
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [B*G] with G={group_size}; got shape {tuple(rewards.shape)}")
    grouped = rewards.reshape(-1, group_size)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return (centred / (ADVANTAGE_SCALES[scale](grouped) + eps)).reshape(-1)
