"""Verifications per second of the `math` and `code` rewards: in this process one after another (what a
plain loop over a TRL reward does) and through reasonkit's worker pool (each call in a worker with a
time limit; `code` programs each in the sandbox).

    python benchmarks/reward_rates.py --samples 128 [--out result.json]

Completions are what a reasoning model writes: a think block, then a boxed answer (math: half right,
half wrong, some needing symbolic comparison) or a Python program read from stdin (code: right, wrong,
and one that loops until killed is left out: its time limit would measure the limit, not the rate).
"""

from __future__ import annotations

import argparse
import json
import time

from common import ROOT, write_result  # noqa: F401  (puts this checkout on sys.path)

MATH = [
    ("<think>12 * 12 = 144</think> The answer is \\boxed{144}.", "144"),
    ("<think>half of 3</think> \\boxed{\\frac{3}{2}}", "1.5"),
    ("<think>roots</think> \\boxed{x = 2, x = -2}", "\\pm 2"),
    ("<think>guess</think> \\boxed{17}", "19"),
    ("<think>simplify</think> \\boxed{\\sqrt{8}}", "2\\sqrt{2}"),
    ("<think>area</think> \\boxed{3\\pi}", "9.42"),
]
PROGRAM = "<think>read two numbers, print the sum</think>\n```python\na, b = map(int, input().split())\nprint({})\n```"
CODE = [
    (PROGRAM.format("a + b"), [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]),
    (PROGRAM.format("a * b"), [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]),
]


def samples(kind: str, count: int) -> tuple[list[str], dict[str, list]]:
    pool = MATH if kind == "math" else CODE
    rows = [pool[i % len(pool)] for i in range(count)]
    column = "answer" if kind == "math" else "tests"
    values = [gold if kind == "math" else json.dumps(gold) for _, gold in rows]
    return [text for text, _ in rows], {column: values}


def rate(kind: str, count: int, workers: int) -> float:
    from rewards.pool import RewardCall, RewardPool

    name = "math" if kind == "math" else "code"
    completions, columns = samples(kind, count)
    with RewardPool({name: RewardCall(name)}, workers=workers, timeout=30) as pool:
        pool.score(["q"] * 4, completions[:4], {k: v[:4] for k, v in columns.items()})  # warm the workers
        started = time.time()
        scores, failures = pool.score(["q"] * count, completions, columns)
        seconds = time.time() - started
    assert not failures, failures[:3]
    assert all(s is not None for s in scores[name])
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from rewards.pool import default_workers

    workers = default_workers()
    result = {"samples": args.samples, "workers": workers}
    for kind in ["math", "code"]:
        result[kind] = {
            "serial_per_second": rate(kind, args.samples, 0),
            "pool_per_second": rate(kind, args.samples, workers),
        }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
