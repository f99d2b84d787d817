"""Format rewards: is the completion written the way the format contract says?"""

from __future__ import annotations

from rewards.contract import THINK_CLOSE, THINK_OPEN, parse_completion
from rewards.registry import register


@register("think_format", checks="format")
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


@register("think_tags", checks="format")
def think_tags(prompts, completions, **kwargs) -> list[float]:
    """Partial credit on the way to ``think_format``: 0.25 for each of one ``<think>``, one ``</think>``,
    the block opening the completion and closing before a non-empty answer. Shaping for a model that
    has not learnt the tags yet; 1.0 exactly when ``think_format`` gives 1.0.

    >>> think_tags(["q"] * 4, ["<think>a</think>1", "<think>a</think>", "<think>a", "1"])
    [1.0, 0.75, 0.5, 0.0]
    """
    scores = []
    for completion in completions:
        opens, closes = completion.count(THINK_OPEN), completion.count(THINK_CLOSE)
        starts = completion.lstrip().startswith(THINK_OPEN)
        answered = opens == closes == 1 and bool(parse_completion(completion).answer)
        scores.append(0.25 * ((opens == 1) + (closes == 1) + starts + answered))
    return scores
