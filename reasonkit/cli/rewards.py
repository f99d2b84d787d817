"""``reasonkit rewards list`` and ``reasonkit rewards check SPEC [--data FILE]``."""

from __future__ import annotations

import argparse
import sys

import rewards
from reasonkit.cli.options import schema_default
from reasonkit.grpo.schema import RewardSpec
from rewards.check import Verdict, battery, run_check
from rewards.convention import SHAPES, DecidedShape, prompt_text, shape_for, takes_environments
from rewards.pool import default_workers

# The verdicts that fail the check (exit 1): refusals of other correct forms are reported only.
FAILING = ("hole", "refused reference")


def add_command(commands) -> None:
    summary = "list the built-in rewards, or probe one for holes before training with it"
    parser = commands.add_parser("rewards", help=summary, description=summary)
    sub = parser.add_subparsers(dest="rewards_command", required=True, metavar="{list,check}")
    summary = "the built-in rewards and what each judges"
    sub.add_parser("list", help=summary, description=summary).set_defaults(handler=list_rewards)
    summary = (
        "score adversarial completions with a reward; exits 1 when it rewards one it should not, "
        "or gives a reference no score"
    )
    check = sub.add_parser(
        "check",
        help=summary,
        description=summary
        + ". Completions are text or messages by the rules the trainer follows (docs/rewards.md).",
    )
    check.set_defaults(handler=check_reward)
    check.add_argument("spec", help="registry name, package.module:function or path/to/file.py:function")
    check.add_argument(
        "--data",
        metavar="FILE",
        help="also probe with these rows (jsonl/json/parquet/csv or hub id): prompt + answer or solution, "
        "or prompt + tests [+ solution]; every column reaches the reward",
    )
    check.add_argument(
        "--max-rows", type=int, default=50, metavar="N", help="rows of --data to use (default 50)"
    )
    check.add_argument(
        "--checks",
        choices=rewards.registry.CHECKS,
        help="which battery to run (default: what the reward is registered to judge, else read from its parameters)",
    )
    check.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument for the reward (bound to it) or its factory (e.g. max_completion_len=256); "
        "the value is read as YAML; repeat for several",
    )
    check.add_argument(
        "--completions",
        choices=SHAPES,
        default=schema_default(RewardSpec, "completions"),
        help="give the reward text or conversational (message list) completions; auto: its annotation, "
        "else the prompts' shape (default %(default)s)",
    )
    check.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="seconds per completion (default 60)"
    )


def list_rewards(args: argparse.Namespace) -> int:
    for name in rewards.known():
        summary = " ".join((rewards.get(name).__doc__ or "").split("\n\n")[0].split()).replace("``", "")
        print(f"{name:14} [{rewards.registry.what_it_checks(name)}] {summary}")
    return 0


def check_reward(args: argparse.Namespace) -> int:
    try:
        reward_args = _reward_args(args.arg)
        reward = rewards.registry.build(args.spec, reward_args)
        checks = args.checks or rewards.registry.what_it_checks(args.spec, reward_args)
    except (rewards.RewardNotFound, rewards.registry.RewardArgumentError, ValueError) as exc:
        print(f"reasonkit: error: {exc}", file=sys.stderr)
        return 2
    if takes_environments(reward):
        print(
            f"reasonkit: error: {args.spec} reads `environments` (the state rollouts leave in TRL's "
            "environment_factory instances), which a battery of completions has none of; try it in a GRPO "
            "stage with the environment (a run of max_steps: 1)",
            file=sys.stderr,
        )
        return 2
    data_rows = _data_rows(args, checks, rewards.required_columns(reward)) if args.data else []
    rows = battery(checks, data_rows)
    # One shape for the whole battery, decided as training on the same data would decide it; the reason
    # travels with it, to the errors the reward raises in the worker processes.
    shape = DecidedShape(*shape_for(reward, args.completions, data_rows[0]["prompt"] if data_rows else ""))
    if args.completions != "auto":
        shape = DecidedShape(shape, "set with --completions")
    verdicts = run_check(
        args.spec, rows, workers=default_workers(), timeout=args.timeout, args=reward_args, completions=shape
    )
    print(report(args.spec, checks, rows, verdicts, f"{shape} ({shape.reason})"))
    return 1 if any(v.kind in FAILING for v in verdicts) else 0


def _reward_args(items: list[str]) -> dict:
    import yaml

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {item!r} is not of the form KEY=VALUE")
        parsed[key] = yaml.safe_load(value)
    return parsed


def _data_rows(args, checks: str, reward_columns: list[str]) -> list[dict]:
    from reasonkit.config import DatasetSource
    from reasonkit.data.traces import DataError, load_rows

    rows = load_rows(DatasetSource(path=args.data, max_rows=args.max_rows))
    if not rows:
        return rows
    needed = ["prompt", *reward_columns] + (["tests"] if checks == "tests" else [])
    missing = [c for c in dict.fromkeys(needed) if c not in rows[0]]
    if checks == "answer" and not any(c in rows[0] for c in rewards.registry.ANSWER_COLUMNS):
        missing.append("answer (or solution)")
    if missing:
        raise DataError(f"{args.data} has no column(s) {missing} (it has {sorted(rows[0])})")
    return rows


def report(spec: str, checks: str, rows, verdicts: list[Verdict], shapes: str = "") -> str:
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
    lines = [
        f"reward {spec!r}: {checks} battery, {len(rows)} rows, {len(verdicts)} completions"
        + (f"; completions given as {shapes}" if shapes else ""),
        format_table(table, ["case", "should", "scores", "verdict"]),
    ]
    holes = [v for v in verdicts if v.kind == "hole"]
    unscored = [v for v in verdicts if v.kind == "refused reference"]
    refused = [v for v in verdicts if v.kind == "refused"]
    # A verdict without a score because the reward failed is told on its failure's one line instead.
    lines += [explain(v, rows) for v in holes + unscored + refused if v.failure is None]
    lines += failure_lines(verdicts)
    counts = (
        f"{len(holes)} hole(s), {len(unscored)} reference(s) without a score, "
        f"{len(refused)} other correct form(s) refused"
    )
    if holes or unscored:
        until = " and ".join(
            what
            for what, found in [("its holes are closed", holes), ("every reference gets a score", unscored)]
            if found
        )
        counts += f": do not train with this reward until {until}"
    elif refused:
        counts += ": reported only; a strict reward may refuse forms its contract does not allow"
    lines.append(counts)
    return "\n".join(lines)


def explain(v: Verdict, rows) -> str:
    """One verdict's line: its score, the score it was judged against, and whose that is."""
    where = f"{v.kind.upper()}: row {v.row} (prompt {prompt_text(rows[v.row].prompt)[:80]!r}), {v.case.name}:"
    if v.kind == "hole":
        whose = (
            "full marks (the row has no correct form)"
            if v.bar.case is None
            else f"the score of the row's best correct form ({v.bar.case.name!r})"
        )
        judged = f"scored {v.score}, not below {v.bar.score}, {whose}"
    elif v.score is None:
        judged = "got no score (the reward returned None" + (
            ", as for a gold answer it cannot read)" if v.kind == "refused reference" else ")"
        )
    else:
        judged = (
            f"scored {v.score}, no higher than {v.rejected.score}, the score of {v.rejected.case.name!r}, "
            f"which it should reject (the row's best correct form, {v.bar.case.name!r}, scored {v.bar.score})"
        )
    return f"{where} {judged}; completion {v.case.completion[:120]!r}"


def failure_lines(verdicts: list[Verdict]) -> list[str]:
    """One line per way the reward failed (the same error on every case is said once), with the number of
    completions it failed on and which."""
    by_failure: dict[str, list[Verdict]] = {}
    for v in verdicts:
        if v.failure is not None:
            by_failure.setdefault(v.failure, []).append(v)
    return [
        f"FAILED on {which(failed, verdicts)}: the reward {failure}" for failure, failed in by_failure.items()
    ]


def which(failed: list[Verdict], verdicts: list[Verdict]) -> str:
    """``failed`` among ``verdicts`` in a few words: all, whole rows, whole cases, or the first few."""
    if len(failed) == len(verdicts):
        return f"all {len(verdicts)} completions"
    count = f"{len(failed)} of {len(verdicts)} completions"
    rows = sorted({v.row for v in failed})
    cases = list(dict.fromkeys(v.case.name for v in failed))
    if len(failed) == sum(v.row in rows for v in verdicts):
        return f"{count}: every case of row(s) {', '.join(map(str, rows))}"
    if len(failed) == sum(v.case.name in cases for v in verdicts):
        others = [name for name in dict.fromkeys(v.case.name for v in verdicts) if name not in cases]
        if len(others) < len(cases):
            return f"{count}: all but the {', '.join(map(repr, others))} one(s)"
        return f"{count}: {', '.join(map(repr, cases))}, in every row"
    named = [f"row {v.row} {v.case.name!r}" for v in failed]
    return f"{count}: " + ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
