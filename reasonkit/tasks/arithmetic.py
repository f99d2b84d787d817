"""Multi-digit multiplication with a programmatic teacher.

The teacher writes the long-multiplication steps a person would: one partial product per non-zero
digit of the second operand, then a running sum::

    What is 27 * 34?  ->  trace "27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918."  ->  answer "918"

Problems are every pair of ``digits``-digit operands, shuffled by a seed and split into disjoint
train and test sets, so the same seed always gives the same problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    a: int
    b: int
    quick: bool = False  # asked as a quick question
    shortcut: bool = False  # the teacher writes the product at once, without the working

    @property
    def prompt(self) -> str:
        return f"Quick: what is {self.a} * {self.b}?" if self.quick else f"What is {self.a} * {self.b}?"

    @property
    def style(self) -> str:
        """How the question is asked ("quick" or "plain"): a column of the task's GRPO prompts, so a run
        can log its reward and accuracy per style (``metrics_by: style``)."""
        return "quick" if self.quick else "plain"

    @property
    def answer(self) -> str:
        return str(self.a * self.b)

    @property
    def trace(self) -> str:
        return f"{self.a} * {self.b} = {self.a * self.b}." if self.shortcut else teacher_trace(self.a, self.b)

    def tool_conversation(self) -> list[dict]:
        """The teacher with a calculator: inside its think block it asks for the product, then answers
        with the result (what an sft stage with ``tools: {functions: [calculator]}`` trains on).

        >>> [m["role"] for m in Problem(27, 34).tool_conversation()]
        ['user', 'assistant', 'tool', 'assistant']
        """
        expression = f"{self.a} * {self.b}"
        call = {
            "type": "function",
            "function": {"name": "calculator", "arguments": {"expression": expression}},
        }
        return [
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": "<think>", "tool_calls": [call]},
            {"role": "tool", "name": "calculator", "content": self.answer},
            {"role": "assistant", "content": f"</think>{self.answer}"},
        ]


def teacher_trace(a: int, b: int) -> str:
    """Long multiplication of ``a * b``, split over the digits of ``b``.

    >>> teacher_trace(27, 34)
    '27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918.'
    >>> teacher_trace(27, 30)
    '27 * 30 = 810.'
    """
    digits = str(b)
    parts = [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"] or [0]
    steps = [f"{a} * {part} = {a * part}." for part in parts]
    total = a * parts[0]
    for part in parts[1:]:
        steps.append(f"{total} + {a * part} = {total + a * part}.")
        total += a * part
    return " ".join(steps)


def arithmetic_splits(
    digits=2, test_size=500, train_size=None, seed=0, rl_size=0, quick_share=0.0, shortcut_rate=0.7
) -> dict[str, list[Problem]]:
    """Disjoint ``train``, ``test`` and ``rl`` lists of Problems, deterministic in ``seed``.

    A ``quick_share`` of the problems (in every split) is asked as a quick question; the teacher
    answers ``shortcut_rate`` of those at once, without the working, as a strong model answers a
    terse question tersely. Which ones is fixed by ``seed``; the splits do not depend on either share.
    """
    low, high = 10 ** (digits - 1), 10**digits
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(low, high) for b in range(low, high)]
    rng.shuffle(pairs)
    problems = []
    for a, b in pairs:
        quick = quick_share > 0 and rng.random() < quick_share
        problems.append(Problem(a, b, quick, quick and rng.random() < shortcut_rate))
    if test_size + rl_size >= len(problems):
        raise ValueError(
            f"test_size + rl_size = {test_size + rl_size} leaves no training problems of {len(problems)}"
        )
    test, rl, train = (
        problems[:test_size],
        problems[test_size : test_size + rl_size],
        problems[test_size + rl_size :],
    )
    return {"train": train[:train_size] if train_size is not None else train, "test": test, "rl": rl}
