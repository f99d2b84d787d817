"""Learning-rate schedules, by the names recipes use."""

from __future__ import annotations


def scheduler_type(name: str, warmup_steps: int) -> str:
    """transformers' scheduler for a recipe's ``lr_scheduler`` and ``warmup_steps``.

    Every schedule warms up linearly over ``warmup_steps``; transformers' ``constant`` ignores them, so
    with warm-up it becomes ``constant_with_warmup``.

    >>> scheduler_type("constant", 10), scheduler_type("constant", 0), scheduler_type("cosine", 10)
    ('constant_with_warmup', 'constant', 'cosine')
    """
    return "constant_with_warmup" if name == "constant" and warmup_steps > 0 else name
