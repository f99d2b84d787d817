"""Rewards used by the GRPO tests, loaded by path like a user's own file (TRL calling convention)."""

import math


def digit_fraction(prompts, completions, **kwargs):
    """Share of the completion's characters that are digits: random text scores low, easy to learn."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def fails_on_seven(prompts, completions, answer, **kwargs):
    return [1 / 0 if "7" in a else digit_fraction(prompts, [c])[0] for a, c in zip(answer, completions)]


def needs_tests(prompts, completions, tests, **kwargs):
    return [0.0 for _ in completions]


def returns_nan(prompts, completions, **kwargs):
    return [math.nan for _ in completions]


def raises_unless_worked(prompts, completions, **kwargs):
    """1.0 for a completion that shows the multiplication and answers (``<think>12 * 34</think>...``);
    raises on anything else, like a verifier that crashes on unexpected output."""
    import re

    return [1.0 if re.fullmatch(r"<think>\d+ \* \d+</think>\d+", c) else 1 / 0 for c in completions]
