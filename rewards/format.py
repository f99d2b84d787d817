"""Format rewards: is the completion written the way the format contract says?"""

from __future__ import annotations

from reasonkit.format import parse_completion
from rewards.registry import register


@register("think_format")
def think_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 for exactly one ``<think>…</think>`` block at the start followed by a non-empty answer, else 0.0.

    >>> think_format(["q"] * 4, ["<think>a</think>1", "<think>a</think>", "1", "<think>a</think>1</think>"])
    [1.0, 0.0, 0.0, 0.0]
    """
    scores = []
    for completion in completions:
        parsed = parse_completion(completion)
        scores.append(float(parsed.trace is not None and bool(parsed.answer)))
    return scores
