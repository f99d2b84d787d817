"""Verifiable reward functions, in TRL's calling convention. ``rewards.get(name_or_spec)`` finds one."""

from rewards.registry import RewardNotFound, argument_names, get, known, register, required_columns

__all__ = ["RewardNotFound", "argument_names", "get", "known", "register", "required_columns"]
