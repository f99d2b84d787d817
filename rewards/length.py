"""Length rewards, counted in tokens (``completion_ids``, which the trainer passes to every reward)."""

from __future__ import annotations

import math

from rewards.registry import get, register


def _token_limit(reward: str, max_tokens: int | None, max_new_tokens: list[int] | None, i: int) -> int:
    """The recipe's ``max_tokens`` for the reward, else the stage's ``max_new_tokens`` for sample ``i``."""
    limit = max_tokens or (max_new_tokens[i] if max_new_tokens else None)
    if not limit:
        raise ValueError(f"{reward} needs max_tokens (args: {{max_tokens: N}}) or the stage's max_new_tokens")
    return limit


@register("soft_overlong", checks="length")
def soft_overlong(
    prompts, completions, completion_ids, max_new_tokens=None, max_tokens=None, buffer_tokens=None, **kwargs
) -> list[float]:
    """DAPO's soft overlong punishment: 0 up to ``max_tokens - buffer_tokens``, then falling linearly to
    -1 at ``max_tokens`` (and -1 beyond). ``max_tokens`` defaults to the stage's ``max_new_tokens`` and
    ``buffer_tokens`` to a fifth of it, so a completion is warned before it is cut off.

    >>> soft_overlong(["q"] * 4, ["a"] * 4, [[0] * 70, [0] * 80, [0] * 90, [0] * 100], max_new_tokens=[100] * 4)
    [0.0, 0.0, -0.5, -1.0]
    """
    scores = []
    for i, ids in enumerate(completion_ids):
        limit = _token_limit("soft_overlong", max_tokens, max_new_tokens, i)
        buffer = buffer_tokens or max(1, limit // 5)
        scores.append(max(-1.0, min(0.0, (limit - buffer - len(ids)) / buffer)))
    return scores


@register("length_scaled", checks="answer")
def length_scaled(
    prompts,
    completions,
    completion_ids,
    max_new_tokens=None,
    verifier="math",
    max_tokens=None,
    correct=(1.0, 0.5),
    wrong=(-1.0, -0.5),
    **columns,
) -> list[float | None]:
    """Correctness (by the ``verifier`` reward) scaled by length on a half cosine: a correct answer earns
    ``correct[0]`` when it is short, falling to ``correct[1]`` at ``max_tokens``; a wrong one costs
    ``wrong[0]`` when short, easing to ``wrong[1]`` when long (thinking longer is punished less).

    The length term is clamped at ``max_tokens`` (default: the stage's ``max_new_tokens``): past it
    the reward stays at its end value instead of coming round the cosine again.

    >>> scores = length_scaled(["q"] * 3, ["<think>.</think>4", "<think>.</think>4", "<think>.</think>5"],
    ...                        [[0] * 10, [0] * 500, [0] * 10], max_tokens=100, answer=["4"] * 3)
    >>> [round(s, 3) for s in scores]
    [0.988, 0.5, -0.988]
    """
    verdicts = get(verifier)(prompts=prompts, completions=completions, **columns)
    scores = []
    for i, (verdict, ids) in enumerate(zip(verdicts, completion_ids)):
        if verdict is None:
            scores.append(None)
            continue
        limit = _token_limit("length_scaled", max_tokens, max_new_tokens, i)
        progress = min(len(ids) / limit, 1.0)
        short, long = correct if verdict >= 1.0 else wrong
        scores.append(long + (short - long) * 0.5 * (1 + math.cos(math.pi * progress)))
    return scores
