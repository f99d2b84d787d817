"""Exact-answer reward: the final answer, read after the think block, equals the gold answer."""

from __future__ import annotations

from rewards.contract import parse_completion
from rewards.registry import register


def same_answer(predicted: str | None, gold: str) -> bool:
    """Exact match after trimming; numbers compare by value (``"918.0"`` equals ``"918"``).

    >>> same_answer("918", "918"), same_answer(" 918 ", "918"), same_answer("918 apples", "918"), same_answer(None, "1")
    (True, True, False, False)
    """
    if predicted is None:
        return False
    predicted, gold = predicted.strip(), gold.strip()
    try:
        return float(predicted.replace(",", "")) == float(gold.replace(",", ""))
    except ValueError:
        return predicted == gold


@register("exact_answer", checks="answer")
def exact_answer(prompts, completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the text after ``</think>`` is exactly the gold ``answer`` (numbers compared by value), else 0.0.

    The answer is never read from inside the reasoning, and anything beside the answer fails: a
    completion must commit to one answer. A missing gold answer yields None (does not apply).

    >>> exact_answer(["What is 6 * 7?"] * 4,
    ...              ["<think>6 * 7 = 42.</think>42", "<think>42</think>41", "<think>6 * 7 = 42.", "<think>.</think>42 or 41"],
    ...              answer=["42"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    scores = []
    for completion, gold in zip(completions, answer):
        if gold is None or not str(gold).strip():
            scores.append(None)
            continue
        scores.append(float(same_answer(parse_completion(completion).answer, str(gold))))
    return scores
