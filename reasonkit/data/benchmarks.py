"""Evaluation benchmarks from local files or hub ids, in the common shapes.

- ``gsm8k``: ``question``, and ``answer`` whose final answer follows ``####`` (``... #### 1,234``)
- ``math``: ``problem``, and ``solution`` whose final answer is the last ``\\boxed{...}``
- ``code``: ``prompt`` and ``tests`` (a JSON list of ``{"input", "output"}``, judged by the ``code`` rewards)
- ``plain``: ``prompt`` and ``answer``

``auto`` picks the shape from the columns. A difficulty column (MATH's ``level`` by default) splits the
results by its values. Every column of a row reaches the verifier under its own name (MATH's
``solution``, what TRL's ``accuracy_reward`` reads), with ``answer`` the gold final answer read out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reasonkit.config import DatasetSource
from reasonkit.data.traces import DataError, load_rows
from reasonkit.eval.schema import BenchmarkSource

MISSING_ANSWER = {
    "gsm8k": "no `####` line",
    "math": "no \\boxed{...}",
    "code": "no tests",
    "plain": "an empty answer",
}
SHAPES = {
    "gsm8k": ("question", "answer"),
    "math": ("problem", "solution"),
    "code": ("prompt", "tests"),
    "plain": ("prompt", "answer"),
}


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str | None  # None for code problems, judged by their tests
    difficulty: str | None = None
    tests: str | None = None  # code problems: JSON list of {"input", "output"}
    columns: dict = field(default_factory=dict, compare=False)  # the benchmark row as read

    def verifier_columns(self) -> dict:
        """What a reward verifier receives for this problem, by column name: the row's columns, with
        ``answer`` the gold final answer (and ``tests`` the code tests) as read out of them."""
        read_out = (
            {"answer": self.answer} if self.tests is None else {"answer": self.answer, "tests": self.tests}
        )
        return {**{k: v for k, v in self.columns.items() if k != "prompt"}, **read_out}


def benchmark_name(source: BenchmarkSource) -> str:
    return source.name or Path(source.path).stem


def load_benchmark(source: BenchmarkSource) -> list[Problem]:
    rows = load_rows(
        DatasetSource(source.path, split=source.split, subset=source.subset, max_rows=source.max_rows),
        "benchmark",
    )
    if not rows:
        raise DataError(f"benchmark {source.path!r} has no rows")
    shape = source.format if source.format != "auto" else detect_shape(set(rows[0]), source.path)
    prompt_column, answer_column = SHAPES[shape]
    missing = [c for c in (prompt_column, answer_column) if c not in rows[0]]
    if missing:
        raise DataError(
            f"benchmark {source.path!r} ({shape}) has no column(s) {missing}; it has {sorted(rows[0])}"
        )
    difficulty_column = source.difficulty_column or ("level" if "level" in rows[0] else None)
    problems, unreadable = [], []
    for index, row in enumerate(rows):
        gold = row[answer_column]
        gold = json.dumps(gold) if isinstance(gold, list) else str(gold)
        answer = (gold.strip() or None) if shape == "code" else final_answer(shape, gold)
        if answer is None:
            unreadable.append(index)
            continue
        difficulty = row.get(difficulty_column) if difficulty_column else None
        difficulty = None if difficulty is None else str(difficulty)
        prompt = str(row[prompt_column])
        problems.append(
            Problem(prompt, None, difficulty, tests=answer, columns=row)
            if shape == "code"
            else Problem(prompt, answer, difficulty, columns=row)
        )
    if unreadable:
        shown = ", ".join(map(str, unreadable[:10]))
        raise DataError(
            f"benchmark {source.path!r} ({shape}): no final answer in {len(unreadable)} row(s) ({shown}): "
            + MISSING_ANSWER[shape]
        )
    return problems


def detect_shape(columns: set[str], path: str) -> str:
    for shape, needed in SHAPES.items():
        if set(needed) <= columns:
            return shape
    raise DataError(
        f"benchmark {path!r}: cannot tell its shape from columns {sorted(columns)}; expected one of "
        + ", ".join(f"{shape} ({' + '.join(cols)})" for shape, cols in SHAPES.items())
        + ", or set format and rename the columns"
    )


def final_answer(shape: str, text: str) -> str | None:
    """The gold final answer out of a benchmark's answer/solution text."""
    if shape == "gsm8k":
        _, sep, tail = text.rpartition("####")
        return tail.strip().replace(",", "") or None if sep else None
    if shape == "math":
        return last_boxed(text)
    return text.strip() or None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces balanced.

    >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip() or None
            depth -= 1
    return None
