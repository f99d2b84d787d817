"""Verifiable reward functions, in TRL's calling convention. ``rewards.get(name_or_spec)`` finds one.

A leaf package: it imports nothing from reasonkit (the format contract it reads completions by,
``rewards.contract``, and the plug-in registry, ``rewards.plugins``, live here for that reason).
"""

from rewards.registry import RewardNotFound, argument_names, get, known, register, required_columns

# The built-in rewards, which register themselves on import.
import rewards.answer  # noqa: E402, F401  isort: skip
import rewards.code  # noqa: E402, F401  isort: skip
import rewards.format  # noqa: E402, F401  isort: skip
import rewards.length  # noqa: E402, F401  isort: skip
import rewards.math_answer  # noqa: E402, F401  isort: skip

__all__ = ["RewardNotFound", "argument_names", "get", "known", "register", "required_columns"]
