"""``reasonkit rewards list`` and ``reasonkit rewards check SPEC [--data FILE]``."""

from __future__ import annotations

import argparse
import sys

import rewards
from rewards.check import Verdict, battery, run_check
from rewards.pool import default_workers


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "rewards", help="list rewards, or probe one for holes before training with it"
    )
    sub = parser.add_subparsers(dest="rewards_command", required=True)
    sub.add_parser("list", help="the built-in rewards and what each judges")
    check = sub.add_parser(
        "check",
        help="score adversarial completions with a reward; exits 1 when it rewards one it should not",
    )
    check.add_argument("spec", help="registry name, package.module:function or path/to/file.py:function")
    check.add_argument(
        "--data", help="also probe with these rows (jsonl/json/parquet/csv or hub id) and their gold"
    )
    check.add_argument("--max-rows", type=int, default=50, help="rows of --data to use (default 50)")
    check.add_argument(
        "--checks",
        choices=rewards.registry.CHECKS,
        help="which battery to run (default: what the reward is registered to judge, else read from its columns)",
    )
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per completion (default 60)")


def run(args: argparse.Namespace) -> int:
    if args.rewards_command == "list":
        for name in rewards.known():
            summary = " ".join((rewards.get(name).__doc__ or "").split("\n\n")[0].split())
            print(f"{name:14} [{rewards.registry.what_it_checks(name)}] {summary}")
        return 0
    try:
        checks = args.checks or rewards.registry.what_it_checks(args.spec)
    except rewards.RewardNotFound as exc:
        print(f"reasonkit: error: {exc}", file=sys.stderr)
        return 2
    rows = battery(checks, _data_rows(args, checks) if args.data else [])
    verdicts = run_check(args.spec, rows, workers=default_workers(), timeout=args.timeout)
    print(report(args.spec, checks, rows, verdicts))
    return 1 if any(v.kind in ("hole", "refused reference") for v in verdicts) else 0


def _data_rows(args, checks: str) -> list[dict]:
    from reasonkit.config import DatasetSource
    from reasonkit.data.traces import DataError, load_rows

    needed = {"answer": ["prompt", "answer"], "tests": ["prompt", "tests"]}.get(checks, [])
    rows = load_rows(DatasetSource(path=args.data, max_rows=args.max_rows))
    missing = [c for c in needed if rows and c not in rows[0]]
    if missing:
        raise DataError(f"{args.data} has no column(s) {missing} (it has {sorted(rows[0])})")
    return rows


def report(spec: str, checks: str, rows, verdicts: list[Verdict]) -> str:
    from reasonkit.metrics import format_table

    by_case: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_case.setdefault(v.case.name, []).append(v)
    table = []
    for name, group in by_case.items():
        bad = [v for v in group if v.kind != "ok"]
        table.append(
            {
                "case": name,
                "should": group[0].case.should,
                "scores": " ".join("-" if v.score is None else f"{v.score:.3g}" for v in group),
                "verdict": ", ".join(sorted({v.kind.upper() for v in bad}))
                + f" ({len(bad)}/{len(group)} rows)"
                if bad
                else "ok",
            }
        )
    holes = [v for v in verdicts if v.kind == "hole"]
    refused = [v for v in verdicts if v.kind.startswith("refused")]
    lines = [
        f"reward {spec!r}: {checks} battery, {len(rows)} rows, {len(verdicts)} completions",
        format_table(table, ["case", "should", "scores", "verdict"]),
    ]
    for v in holes + refused:
        lines.append(
            f"{v.kind.upper()}: row {v.row} (prompt {rows[v.row].prompt[:80]!r}), {v.case.name}: scored "
            f"{v.score} against the reference's {v.reference_score}; completion {v.case.completion[:120]!r}"
            + (f"; the reward {v.failure}" if v.failure else "")
        )
    lines.append(
        f"{len(holes)} hole(s), {len(refused)} refusal(s)"
        + (": do not train with this reward until they are fixed" if holes else "")
    )
    return "\n".join(lines)
