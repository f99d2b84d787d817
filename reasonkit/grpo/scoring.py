"""Score completions with the recipe's reward functions and combine them into one reward each."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import rewards as reward_registry


class RewardError(RuntimeError):
    """A reward function failed or returned something unusable; the message names it and the sample."""


@dataclass
class WeightedReward:
    name: str
    fn: object
    weight: float


@dataclass
class Scores:
    total: torch.Tensor  # [N] weighted sum over the rewards that apply (None skipped)
    by_reward: dict[str, list[float | None]]
    unscored: int  # completions for which no reward applied (total 0)


def load_rewards(specs) -> list[WeightedReward]:
    return [WeightedReward(spec.name, reward_registry.get(spec.name), spec.weight) for spec in specs]


def check_columns(weighted: list[WeightedReward], columns: set[str]) -> None:
    """Fail before the first step when the data lacks a column a reward needs."""
    for reward in weighted:
        missing = [c for c in reward_registry.required_columns(reward.fn) if c not in columns]
        if missing:
            raise RewardError(
                f"reward {reward.name!r} needs dataset column(s) {missing}; the prompt data has "
                f"{sorted(columns)}. Rename the column in the data or choose another reward."
            )


def score_completions(
    weighted: list[WeightedReward], prompts: list[str], completions: list[str], columns: dict[str, list]
) -> Scores:
    """Call every reward on the whole batch (TRL convention) and sum them with their weights."""
    by_reward = {r.name: _call(r, prompts, completions, columns) for r in weighted}
    total, unscored = [], 0
    for i in range(len(completions)):
        applied = [r.weight * by_reward[r.name][i] for r in weighted if by_reward[r.name][i] is not None]
        unscored += not applied
        total.append(sum(applied))
    return Scores(torch.tensor(total, dtype=torch.float32), by_reward, unscored)


def _call(reward: WeightedReward, prompts, completions, columns) -> list[float | None]:
    try:
        values = reward.fn(prompts=prompts, completions=completions, **columns)
    except Exception as exc:  # find the sample it fails on, to name it
        raise RewardError(_failure(reward, prompts, completions, columns, exc)) from exc
    if not isinstance(values, (list, tuple)) or len(values) != len(completions):
        raise RewardError(
            f"reward {reward.name!r} must return one value per completion ({len(completions)}); "
            f"got {type(values).__name__} of length {len(values) if hasattr(values, '__len__') else '?'}"
        )
    for i, value in enumerate(values):
        if value is not None and (not isinstance(value, (int, float)) or math.isnan(value)):
            raise RewardError(
                f"reward {reward.name!r} returned {value!r} for sample {i} "
                f"(completion {completions[i][:200]!r}); expected a float or None"
            )
    return [None if v is None else float(v) for v in values]


def _failure(reward, prompts, completions, columns, exc) -> str:
    for i in range(len(completions)):
        try:
            reward.fn(
                prompts=prompts[i : i + 1],
                completions=completions[i : i + 1],
                **{k: v[i : i + 1] for k, v in columns.items()},
            )
        except Exception as single:
            return (
                f"reward {reward.name!r} raised {type(single).__name__}: {single} on sample {i} "
                f"(prompt {prompts[i][:200]!r}, completion {completions[i][:200]!r})"
            )
    return f"reward {reward.name!r} raised {type(exc).__name__}: {exc} on the batch (no single sample fails alone)"
