"""Score completions with the recipe's reward functions and combine them into one reward each."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

import rewards as reward_registry
from reasonkit.errors import ReasonkitError
from rewards.pool import Failure, RewardCall, RewardPool

logger = logging.getLogger(__name__)


class RewardError(ReasonkitError, RuntimeError):
    """A reward function is unusable; the message names it and a sample it failed on."""


@dataclass
class WeightedReward:
    name: str  # as the metrics show it: the spec, numbered when a recipe lists it twice
    call: RewardCall
    weight: float

    @property
    def fn(self):
        return self.call.resolve()  # args bound, or the reward its factory makes


@dataclass
class Scores:
    total: torch.Tensor  # [N] weighted sum over the rewards that apply (None skipped)
    by_reward: dict[str, list[float | None]]
    failed: dict[str, int]  # per reward: samples it failed on (raised, hung, crashed), scored None
    unscored: int  # completions for which no reward applied (total 0)
    failed_samples: torch.Tensor  # [N] bool: some reward failed on it, so its total is not to be trusted


def load_rewards(specs) -> list[WeightedReward]:
    weighted, seen = [], {}
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        name = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        call = RewardCall(spec.name, dict(spec.args), spec.completions)
        weighted.append(WeightedReward(name, call, spec.weight))
    return weighted


def check_columns(weighted: list[WeightedReward], columns: set[str]) -> None:
    """Fail before the first step when the data lacks a column a reward needs."""
    for reward in weighted:
        missing = [
            c
            for c in reward_registry.required_columns(reward.fn)
            if c not in columns and c not in reward.call.args
        ]
        if missing:
            raise RewardError(
                f"reward {reward.name!r} needs dataset column(s) {missing}; the prompt data has "
                f"{sorted(columns)}. Rename the column in the data or choose another reward."
            )


@dataclass
class EnvironmentReward:
    name: str
    weight: float = 1.0


class RewardScorer:
    """The recipe's rewards, called in a pool of worker processes, and the environments' own, summed with
    their weights."""

    def __init__(
        self,
        weighted: list[WeightedReward],
        workers: int,
        timeout: float,
        environment_rewards: list[str] = (),
    ):
        # An environment's get_reward counts with weight 1, as in TRL (it was read when its rollout ended).
        self.environment_rewards = list(environment_rewards)
        self.weighted = [*weighted, *(EnvironmentReward(name) for name in self.environment_rewards)]
        self.pool = RewardPool({r.name: r.call for r in weighted}, workers=workers, timeout=timeout)

    def close(self) -> None:
        self.pool.close()

    def score(
        self,
        prompts: list[str],
        completions: list[str],
        columns: dict[str, list],
        environment_rewards=None,
        environments=None,
    ) -> Scores:
        """Per completion, ``environment_rewards``: (environment class, its reward or why it failed) or None;
        ``environments``: the instance that ran it, for the rewards that read them."""
        by_reward, failures = self.pool.score(prompts, completions, columns, environments)
        for name in self.environment_rewards:
            by_reward[name] = [None] * len(completions)
        for i, entry in enumerate(environment_rewards or []):
            if entry is None:
                continue
            name, value = entry
            if isinstance(value, str):
                failures.append(Failure(name, i, value))
            else:
                by_reward[name][i] = value
        failed = {r.name: 0 for r in self.weighted}
        for failure in failures:
            failed[failure.reward] += 1
        for name, count in failed.items():
            if not count:
                continue
            first = next(f for f in failures if f.reward == name).describe(prompts, completions)
            if count == len(completions):
                raise RewardError(f"reward {name!r} failed on every sample of the batch; the first: {first}")
            logger.warning(
                "reward %r failed on %d of %d samples (on_reward_failure says what they train as); the first: %s",
                name,
                count,
                len(completions),
                first,
            )
        total, unscored = [], 0
        for i in range(len(completions)):
            applied = [
                r.weight * by_reward[r.name][i] for r in self.weighted if by_reward[r.name][i] is not None
            ]
            unscored += not applied
            total.append(sum(applied))
        failed_samples = torch.zeros(len(completions), dtype=torch.bool)
        failed_samples[[f.sample for f in failures]] = True
        return Scores(torch.tensor(total, dtype=torch.float32), by_reward, failed, unscored, failed_samples)


def gather_scores(scores: Scores, gather, world: int) -> Scores:
    """Every process's scores, concatenated in process order (``gather``: the trainer's list gather)."""
    if world == 1:
        return scores
    return Scores(
        total=torch.tensor(gather(scores.total.tolist())),
        by_reward={name: gather(values) for name, values in scores.by_reward.items()},
        failed={name: sum(gather([count])) for name, count in scores.failed.items()},
        unscored=sum(gather([scores.unscored])),
        failed_samples=torch.tensor(gather(scores.failed_samples.tolist()), dtype=torch.bool),
    )
