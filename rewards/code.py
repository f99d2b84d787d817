"""Code rewards: run the completion's program against stdin/stdout tests, in the sandbox."""

from __future__ import annotations

import json
import re

from rewards.contract import parse_completion
from rewards.registry import register
from rewards.sandbox import Limits, run_python

FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
TEST_LIMITS = Limits(wall_seconds=4.0, cpu_seconds=3)  # per test


def extract_program(completion: str) -> str | None:
    """The last fenced code block after the think block; None when there is none.

    >>> extract_program("<think>```python\\nprint(1)\\n```</think>Here:\\n```python\\nprint(2)\\n```")
    'print(2)\\n'
    >>> extract_program("<think>```python\\nprint(1)\\n```</think>no code") is None
    True
    """
    answer = parse_completion(completion).answer
    blocks = FENCE.findall(answer or "")
    return blocks[-1] if blocks else None


def normalise_output(text: str) -> str:
    """Trailing whitespace of each line and trailing blank lines do not count; everything else does."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def passes(program: str, test: dict, limits: Limits = TEST_LIMITS) -> bool:
    """Whether ``program`` prints exactly the test's expected output for its input, in the sandbox."""
    result = run_python(program, stdin=test["input"], limits=limits)
    return result.ok and normalise_output(result.stdout) == normalise_output(test["output"])


def tests_of(value) -> list[dict] | None:
    try:
        tests = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return None
    if (
        not isinstance(tests, list)
        or not tests
        or not all(isinstance(t, dict) and "input" in t and "output" in t for t in tests)
    ):
        return None
    return tests


def _score(completions, tests_column, all_or_nothing: bool) -> list[float | None]:
    scores = []
    for completion, raw_tests in zip(completions, tests_column):
        tests = tests_of(raw_tests)
        if tests is None:
            scores.append(None)  # no usable tests: does not apply
            continue
        program = extract_program(completion)
        if program is None:
            scores.append(0.0)
            continue
        if all_or_nothing:  # all() stops at the first failing test: the rest need not run
            scores.append(float(all(passes(program, test) for test in tests)))
        else:
            scores.append(sum(passes(program, test) for test in tests) / len(tests))
    return scores


@register("code", checks="tests")
def code(prompts, completions, tests, **kwargs) -> list[float | None]:
    """Fraction of the row's ``tests`` (``[{"input": stdin, "output": expected stdout}]``, or that list as
    JSON text) that the last code block after the think block passes, each run in the sandbox.

    Output is compared whole: printing part of the expected output, or extra lines, fails.
    """
    return _score(completions, tests, all_or_nothing=False)


@register("code_all", checks="tests")
def code_all(prompts, completions, tests, **kwargs) -> list[float | None]:
    """1.0 only when every test passes (see ``code``), else 0.0."""
    return _score(completions, tests, all_or_nothing=True)
