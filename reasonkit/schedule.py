"""The optimizer and the learning-rate schedules, by the names recipes use."""

from __future__ import annotations

import torch


def adamw(parameters, **settings) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel for the parameters' device and dtype (transformers'
    default, ``adamw_torch_fused``, so TRL's too): one kernel a step instead of a pass per operation,
    4x faster on a CPU at 196M parameters (0.21 against 0.85 s a step)."""
    parameters = list(parameters)
    try:
        return torch.optim.AdamW(parameters, fused=True, **settings)
    except RuntimeError:  # a device or dtype without the fused kernel
        return torch.optim.AdamW(parameters, **settings)


def scheduler_type(name: str, warmup_steps: int) -> str:
    """transformers' scheduler for a recipe's ``lr_scheduler`` and ``warmup_steps``.

    Every schedule warms up linearly over ``warmup_steps``; transformers' ``constant`` ignores them, so
    with warm-up it becomes ``constant_with_warmup``.

    >>> scheduler_type("constant", 10), scheduler_type("constant", 0), scheduler_type("cosine", 10)
    ('constant_with_warmup', 'constant', 'cosine')
    """
    return "constant_with_warmup" if name == "constant" and warmup_steps > 0 else name
