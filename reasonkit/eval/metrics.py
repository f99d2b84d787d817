"""Evaluation metrics as pure functions: pass@k, maj@k, and their confidence intervals.

Every metric is a mean over problems of a per-problem value, so one bootstrap over problems gives
each its interval.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples with c correct (Chen et al., 2021):
    1 - C(n - c, k) / C(n, k), the chance that k samples drawn without replacement hold a correct one.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if not 1 <= k <= num_samples:
        raise ValueError(f"pass@{k} needs 1 <= k <= the {num_samples} samples per problem")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """maj@k of one problem: 1.0 if the most frequent answer among the first k samples is correct.

    Unreadable answers (None) do not vote; a tie goes to the answer seen first. No vote at all: 0.

    >>> majority_correct(["3", "4", "4", None], [True, False, False, False], 4)
    0.0
    >>> majority_correct(["3", "4", "3"], [True, False, True], 3)
    1.0
    """
    votes = Counter(a for a in answers[:k] if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = next(a for a in answers[:k] if a is not None and votes[a] == top)
    return float(correct[answers.index(winner)])


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = mean,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (one per problem), seeded."""
    if len(values) < 2:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    stats = sorted(statistic(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return stats[int(tail * (resamples - 1))], stats[math.ceil((1 - tail) * (resamples - 1))]
