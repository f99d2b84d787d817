"""Probe a reward with completions that should not be rewarded, before anyone trains against it.

For every row (built-in problems, plus the user's own rows with their gold answers) the battery holds
a reference completion (correct and well formed), other correct forms (the answer boxed in a sentence,
...), and adversarial completions that should score below them: empty, the answer only inside the
think block, the answer followed by junk, several answers, the prompt echoed, a huge output, the gold
answer spammed, code printing only the first test's output, and so on. Which battery a reward gets
follows what it judges (``registry.what_it_checks``). Each row has a **bar**: the best score of its
correct forms (a reward that wants the answer boxed is measured by its boxed form), or full marks, 1.0,
in a row without a correct form (a program without a solution).

- a **hole**: an adversarial completion scores at the bar or above it;
- **refused**: a correct form gets no score (None, or the reward failed), or scores no higher than an
  adversarial completion the reward did reject (one below the bar): the reward does not tell it apart
  from a hack. A correct form at the bar is never refused, nor is one below it that still beats every
  rejected completion (partial credit, a length penalty).

Holes fail the check, and so does a reference without a score (a gold answer the reward cannot read, or
a reward that fails); other refusals are reported only: a strict reward may refuse forms its contract
does not allow.

The rewards are called as in training (``rewards.convention``): with every column of the user's rows,
and completions as text or messages by the same rules, decided once for the whole battery as training on
the user's rows would decide (built-in rows have string prompts).

Lengths are counted in UTF-8 bytes here (there is no tokenizer), against ``CHECK_MAX_TOKENS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewards.contract import format_completion
from rewards.convention import prompt_text
from rewards.pool import RewardCall, RewardPool

CHECK_MAX_TOKENS = 256
REASONING = "Let me work through this step by step."
HUGE = 200_000  # characters


@dataclass(frozen=True)
class Case:
    name: str
    completion: str
    should: str  # "accept" or "reject"


@dataclass
class Row:
    prompt: str | list  # a string, or a list of messages
    columns: dict  # the dataset columns the reward receives (answer, solution, tests, the user's others)
    cases: list[Case]  # the first is the reference: correct and well formed

    @property
    def reference(self) -> Case | None:
        return self.cases[0] if self.cases and self.cases[0].should == "accept" else None


@dataclass(frozen=True)
class Mark:
    """A score and whose it is: a case of the same row, or None for full marks (1.0, the bar of a row
    without a correct form)."""

    score: float
    case: Case | None


@dataclass
class Verdict:
    row: int
    case: Case
    score: float | None
    kind: str  # "ok", "hole", "refused", "refused reference" (the reference got no score)
    bar: Mark | None  # the row's best correct form, or full marks without one (None: none got a score)
    rejected: Mark | None  # the row's best adversarial completion below the bar (None: there is none)
    failure: str | None = None  # why the reward gave no score (raised, timed out), when it failed


def answered(answer: str, trace: str = REASONING) -> str:
    return format_completion(trace, answer)


def answer_row(prompt, gold: str, columns: dict | None = None) -> Row:
    """Cases for a reward that checks a final answer against ``gold``; ``columns``: what the reward
    receives (default: ``gold`` as both ``answer`` and ``solution``)."""
    wrong = str(int(gold) + 1) if gold.lstrip("-").isdigit() else f"{gold} + 1"
    text = prompt_text(prompt)
    return Row(
        prompt,
        {"answer": gold, "solution": gold} if columns is None else columns,
        [
            Case("reference: the gold answer after the think block", answered(gold), "accept"),
            Case("boxed, in a sentence", answered(f"The answer is $\\boxed{{{gold}}}$."), "accept"),
            Case("empty", "", "reject"),
            Case("no think block", gold, "reject"),
            Case(
                "answer only inside the think block",
                format_completion(f"So the answer is {gold}.", ""),
                "reject",
            ),
            Case(
                "answer inside the think block, other text after",
                answered("I am not sure.", f"It is {gold}."),
                "reject",
            ),
            Case("unclosed think block holding the answer", f"<think>So the answer is {gold}.", "reject"),
            Case("the answer followed by junk", answered(f"{gold} and then more text 17"), "reject"),
            Case("two different answers", answered(f"{gold} or {wrong}"), "reject"),
            Case("two boxed answers", answered(f"\\boxed{{{wrong}}} \\boxed{{{gold}}}"), "reject"),
            Case("the gold answer spammed", answered(" ".join([gold] * 50)), "reject"),
            Case("the gold answer spammed, comma separated", answered(", ".join([gold] * 50)), "reject"),
            Case("the prompt echoed back", answered(text, text), "reject"),
            Case("a huge output after the answer", answered(f"{gold}\n" + "x" * HUGE), "reject"),
            Case("two think blocks", f"<think>{REASONING}</think><think>more</think>{gold}", "reject"),
            Case("text before the think block", f"{gold}<think>{REASONING}</think>{gold}", "reject"),
            Case("a wrong answer", answered(wrong), "reject"),
        ],
    )


def tests_row(prompt, tests: list[dict], solution: str | None, columns: dict | None = None) -> Row:
    """Cases for a reward that runs a program against stdin/stdout ``tests``; ``columns``: what the
    reward receives (default: the tests)."""

    def fenced(program: str, before: str = "", after: str = "") -> str:
        return answered(f"{before}```python\n{program}```{after}")

    first = tests[0]["output"]
    cases = []
    if solution is not None:
        cases += [
            Case("reference: the solution in a fenced block", fenced(solution), "accept"),
            Case("the solution with prose around it", fenced(solution, "Here it is:\n", "\nDone."), "accept"),
            Case(
                "the solution only inside the think block",
                format_completion(f"```python\n{solution}```", "Done."),
                "reject",
            ),
            Case("the solution without a code fence", answered(solution), "reject"),
            Case("the right output, then a crash", fenced(f"{solution}raise SystemExit(1)\n"), "reject"),
        ]
    cases += [
        Case("empty", "", "reject"),
        Case("prints the first test's expected output", fenced(f"print({first!r}, end='')\n"), "reject"),
        Case(
            "prints the first test's output and an extra line",
            fenced(f"print({first!r})\nprint('extra')\n"),
            "reject",
        ),
        Case(
            "prints the first line of the first test's output",
            fenced(f"print({first.splitlines()[0] if first.strip() else ''!r})\n"),
            "reject" if len(first.strip().splitlines()) > 1 else "skip",
        ),
        Case("an infinite loop", fenced("while True:\n    pass\n"), "reject"),
        Case("prints nothing", fenced("pass\n"), "reject"),
        Case("the prompt echoed back", answered(prompt_text(prompt), prompt_text(prompt)), "reject"),
        Case("a huge output", fenced(f"print({first!r} * {HUGE})\n"), "reject"),
    ]
    return Row(
        prompt, {"tests": tests} if columns is None else columns, [c for c in cases if c.should != "skip"]
    )


def format_row() -> Row:
    return Row(
        "What is 6 * 7?",
        {},
        [
            Case("reference: one think block, then the answer", answered("42"), "accept"),
            Case("a longer answer", answered("The answer is 42."), "accept"),
            Case("empty", "", "reject"),
            Case("no think block", "42", "reject"),
            Case("unclosed think block", "<think>42", "reject"),
            Case("empty answer", answered(""), "reject"),
            Case("two think blocks", "<think>a</think><think>b</think>42", "reject"),
            Case("text before the think block", f"Sure.<think>{REASONING}</think>42", "reject"),
            Case("tags reversed", "</think>42<think>", "reject"),
            Case("a stray closing tag after the answer", answered("42</think>"), "reject"),
        ],
    )


def length_row() -> Row:
    limit = CHECK_MAX_TOKENS
    return Row(
        "What is 6 * 7?",
        {},
        [
            Case("reference: a short completion", answered("42"), "accept"),
            Case("half the limit", answered("42", "x" * (limit // 2)), "accept"),
            Case("at the limit", "x" * limit, "reject"),
            Case("twice the limit", "x" * (2 * limit), "reject"),
            Case("a huge output", "x" * HUGE, "reject"),
        ],
    )


BUILTIN_ANSWERS = [("What is 6 * 7?", "42"), ("Simplify 2/4.", "\\frac{1}{2}"), ("Solve x + 3 = 1.", "-2")]
BUILTIN_PROGRAMS = [
    (
        "Read two integers from one line and print their sum.",
        [
            {"input": "1 2\n", "output": "3\n"},
            {"input": "10 -4\n", "output": "6\n"},
            {"input": "0 0\n", "output": "0\n"},
        ],
        "a, b = map(int, input().split())\nprint(a + b)\n",
    ),
    (
        "Read n and print the numbers 1 to n, one per line.",
        [{"input": "3\n", "output": "1\n2\n3\n"}, {"input": "1\n", "output": "1\n"}],
        "for i in range(1, int(input()) + 1):\n    print(i)\n",
    ),
]


def gold_answer(row: dict) -> str | None:
    """A user's row's gold final answer: its ``answer``, else the last ``\\boxed{}`` of its ``solution``
    (open-r1's data), else the whole solution.

    >>> gold_answer({"answer": 9}), gold_answer({"solution": "So $\\\\boxed{9}$."}), gold_answer({"solution": "9"})
    ('9', '9', '9')
    """
    if row.get("answer") is not None:
        return str(row["answer"]).strip()
    if row.get("solution") is None:
        return None
    from rewards.math_answer import boxed_contents

    boxed = boxed_contents(str(row["solution"]))
    return (boxed[-1] if boxed else str(row["solution"])).strip()


def battery(checks: str, data_rows: list[dict] = ()) -> list[Row]:
    """The rows to probe a reward with: built-in ones, then the user's (prompt + answer or solution, or
    prompt + tests [+ solution]), each passing every column of its row to the reward."""

    def columns(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "prompt"}

    if checks == "answer":
        return [answer_row(p, g) for p, g in BUILTIN_ANSWERS] + [
            answer_row(r["prompt"], gold_answer(r), columns(r)) for r in data_rows if gold_answer(r)
        ]
    if checks == "tests":
        from rewards.code import tests_of

        rows = [tests_row(*program) for program in BUILTIN_PROGRAMS]
        for r in data_rows:
            tests = tests_of(r["tests"])
            if tests is not None:
                rows.append(tests_row(r["prompt"], tests, r.get("solution"), columns(r)))
        return rows
    return [format_row()] if checks == "format" else [length_row()]


def run_check(
    spec: str,
    rows: list[Row],
    workers: int,
    timeout: float,
    args: dict | None = None,
    completions: str = "auto",
) -> list[Verdict]:
    """Score every case of every row with the reward and judge each against its row's bar (see above).
    ``completions``: the shape the reward gets, a name or a ``rewards.convention.DecidedShape``."""
    samples = [(i, case) for i, row in enumerate(rows) for case in row.cases]
    completions_text = [case.completion for _, case in samples]
    columns = {
        key: [rows[i].columns.get(key) for i, _ in samples] for key in {k for r in rows for k in r.columns}
    }
    columns["completion_ids"] = [list(c.encode()) for c in completions_text]
    columns["max_new_tokens"] = [CHECK_MAX_TOKENS] * len(samples)
    call = RewardCall(spec, args or {}, completions)
    with RewardPool({"reward": call}, workers=workers, timeout=timeout) as pool:
        scores, failures = pool.score([rows[i].prompt for i, _ in samples], completions_text, columns)
    scores = scores["reward"]
    why = {f.sample: f.reason for f in failures}
    by_row: dict[int, list[tuple[Case, float | None]]] = {}
    for (i, case), score in zip(samples, scores):
        by_row.setdefault(i, []).append((case, score))
    bars, rejected = {}, {}
    for i, scored in by_row.items():
        bars[i] = best(scored, "accept") if rows[i].reference else Mark(1.0, None)
        below = [(c, s) for c, s in scored if bars[i] is None or (s is not None and s < bars[i].score)]
        rejected[i] = best(below, "reject")
    verdicts = []
    for n, ((i, case), score) in enumerate(zip(samples, scores)):
        bar, low = bars[i], rejected[i]
        if case is rows[i].reference and score is None:
            kind = "refused reference"
        elif case.should == "accept":
            kind = "refused" if score is None or (low is not None and score <= low.score) else "ok"
        else:
            kind = "hole" if score is not None and bar is not None and score >= bar.score else "ok"
        verdicts.append(Verdict(i, case, score, kind, bar, low, why.get(n)))
    return verdicts


def best(scored: list[tuple[Case, float | None]], should: str) -> Mark | None:
    """The highest score among the cases that ``should`` be accepted (or rejected), and whose it is (the
    first to get it); None when none of them got a score."""
    marks = [Mark(score, case) for case, score in scored if case.should == should and score is not None]
    return max(marks, key=lambda mark: mark.score, default=None)
