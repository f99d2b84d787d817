"""``reasonkit eval MODEL --benchmark FILE_OR_HUB_ID ...``: the evaluation stage without a recipe.

A language model is evaluated as a recipe's eval stage would (pass@k / maj@k with confidence intervals);
a trm stage's ``model/`` folder is evaluated on its task's held-out puzzles (or ``--benchmark`` files in
the Sudoku-Extreme shape), with the recursion made visible: ``results.json``, ``<split>_steps.png``
(accuracy against test-time supervision steps) and ``dynamics.png`` (change per recursion) go to
``--output``, and the tables are printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reasonkit.cli.options import (
    add_dtype_option,
    add_engine_option,
    add_format_option,
    add_sampling_options,
    add_seed_option,
    add_tool_options,
    add_verifier_options,
    schema_default,
    tool_settings,
)
from reasonkit.eval.schema import BenchmarkSource, EvalStage


def add_command(commands) -> None:
    summary = "pass@k / maj@k of a saved model on benchmarks, with confidence intervals"
    cmd = commands.add_parser("eval", help=summary, description=summary)
    cmd.set_defaults(handler=run, uses_libraries=True, library_log=library_log)
    cmd.add_argument(
        "model",
        help="a saved model directory (a stage's model/, or any transformers model; a trm stage's model/ is "
        "evaluated on its task's held-out puzzles)",
    )
    cmd.add_argument(
        "--benchmark",
        action="append",
        metavar="PATH",
        help="a local .jsonl/.json/.parquet/.csv or a hub id, gsm8k / math / code / plain shaped (trm: "
        "Sudoku-Extreme shaped); repeat for several. Required except for trm models",
    )
    cmd.add_argument(
        "--steps", type=int, nargs="+", metavar="K", help="trm models: test-time supervision steps to report"
    )
    cmd.add_argument(
        "--tolerance", type=float, metavar="TOL", help="trm models: the fixed-point halting rule's tolerance"
    )
    cmd.add_argument(
        "--recurrences",
        type=int,
        nargs="+",
        default=[],
        metavar="R",
        help="recurrent-depth models: also evaluate at each test-time depth R (core iterations per token)",
    )
    cmd.add_argument(
        "--exit-kl",
        type=float,
        metavar="KL",
        help="recurrent-depth models: also evaluate with the adaptive exit (a token stops iterating once its "
        "next-token distribution moves less than KL between iterations; Huginn: 5e-4), at most the deepest R",
    )
    add_format_option(cmd, "benchmarks")
    cmd.add_argument(
        "--split",
        default=schema_default(BenchmarkSource, "split"),
        help="hub datasets: the split (default %(default)s)",
    )
    # Not the eval stage's default (null): in a recipe, null is the GRPO stage's accuracy verifier, else
    # exact_answer; without a recipe, exact_answer.
    add_verifier_options(cmd, EvalStage, default="exact_answer")
    cmd.add_argument(
        "--num-samples",
        type=int,
        default=schema_default(EvalStage, "num_samples"),
        metavar="N",
        help="completions per problem (default %(default)s)",
    )
    cmd.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=schema_default(EvalStage, "k"),
        metavar="K",
        help="pass@k and maj@k for each k (default 1)",
    )
    add_sampling_options(cmd, EvalStage)
    cmd.add_argument("--max-problems", type=int, metavar="N", help="evaluate the first N problems only")
    cmd.add_argument(
        "--batch-size",
        type=int,
        default=schema_default(EvalStage, "batch_size"),
        metavar="N",
        help="completions per generate call (trm: puzzles per forward pass) (default %(default)s)",
    )
    # Not the eval stage's default (null, unseeded sampling): a command run twice gives the same figures.
    add_seed_option(cmd, default=0)
    add_engine_option(cmd, default=schema_default(EvalStage, "engine"))
    add_tool_options(cmd)
    add_dtype_option(cmd, default="float32")
    cmd.add_argument(
        "--output",
        default="eval-results",
        metavar="DIR",
        help="folder for the results and per-sample files (default %(default)s)",
    )


def library_log(args) -> Path:
    """Where the libraries' log records go: beside the results."""
    path = Path(args.output) / "eval.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run(args) -> int:
    from reasonkit.config import ConfigError
    from reasonkit.data.benchmarks import benchmark_name, load_benchmark
    from reasonkit.eval.evaluate import evaluate_saved_model
    from reasonkit.eval.schema import check_eval_stage
    from reasonkit.metrics import format_table

    if is_trm_model(args.model):
        if tool_settings(args) is not None:
            raise ConfigError(
                "--tool / --environment-factory: a trm model answers puzzles, it calls no tools"
            )
        return run_trm(args)
    if not args.benchmark:
        raise ConfigError("--benchmark: give at least one benchmark file or hub id")
    stage = EvalStage(
        num_samples=args.num_samples,
        k=args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        max_problems=args.max_problems,
        batch_size=args.batch_size,
        seed=args.seed,
        verifier=args.verifier,
        verifier_completions=args.completions,
        engine=args.engine,
        recurrences=args.recurrences,
        exit_kl=args.exit_kl,
        tools=tool_settings(args),
    )
    problems = check_eval_stage("eval", stage, args.model)  # the checks a recipe's eval stage gets
    if problems:
        raise ConfigError("; ".join(problems))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.benchmark:
        source = BenchmarkSource(path, format=args.format, split=args.split)
        name = benchmark_name(source)
        result = evaluate_saved_model(
            args.model, stage, load_benchmark(source), args.verifier, out, "model", name, args.dtype
        )
        row = {"benchmark": name, "n": result["n"]}
        for metric in [m for m in result if m.startswith(("pass@", "maj@"))]:
            estimate = result[metric]
            row[metric] = f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"
        row["tokens"] = round(result["generated_tokens"], 1)  # generated per answer, next to the accuracy
        if "tools/calls_per_completion" in result:  # the model could call tools
            row["tool_calls"] = round(result["tools/calls_per_completion"], 2)
            row["failed_calls"] = round(result["tools/failed_share"], 3)
        if "thoughts" in result:
            row["thoughts"] = result["thoughts"]
        rows.append(row)
        for depth, at_depth in result.get("by_recurrence", {}).items():
            rows.append(
                {
                    "benchmark": f"{name} {depth}",
                    "n": result["n"],
                    "pass@1": f"{at_depth['pass@1']['value']:.3f}",
                    "tokens": round(at_depth["generated_tokens"], 1),
                    "iterations": round(at_depth["recurrence_steps"], 2),
                }
            )
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("\n" + format_table(rows, columns))
    print(f"\nresults and per-sample completions: {out}/")
    return 0


def is_trm_model(directory: str) -> bool:
    from reasonkit.manifest import read_manifest

    manifest = read_manifest(directory) if Path(directory).is_dir() else None
    return bool(manifest and manifest.get("stage") == "trm")


def run_trm(args) -> int:
    """A trm stage's saved model on its task's held-out puzzles, or on ``--benchmark`` Sudoku files."""
    from reasonkit.config import ConfigError
    from reasonkit.trm.data import puzzle_splits, read_puzzle_file, to_tensors
    from reasonkit.trm.evaluate import evaluate_model, report
    from reasonkit.trm.schema import PuzzleFile, default_eval_steps, effective_supervision_steps
    from reasonkit.trm.trainer import load_trm

    stage, kind, model = load_trm(args.model)
    if args.benchmark:
        if stage.task.name != "sudoku":
            raise ConfigError(
                "--benchmark files are Sudoku-Extreme shaped; a maze model evaluates its own task"
            )
        splits = {
            Path(path).stem: to_tensors(
                read_puzzle_file(PuzzleFile(path, split=args.split, max_rows=args.max_problems), kind.shape)
            )
            for path in args.benchmark
        }
    else:
        splits = {k: v for k, v in puzzle_splits(stage.task).items() if k != "train"}
        if args.max_problems:
            splits = {
                k: dataclasses.replace(
                    v, inputs=v.inputs[: args.max_problems], labels=v.labels[: args.max_problems]
                )
                for k, v in splits.items()
            }
    trained = effective_supervision_steps(stage)
    steps = sorted(set(args.steps)) if args.steps else default_eval_steps(stage)
    out = Path(args.output)
    results = evaluate_model(
        model,
        kind,
        splits,
        out,
        eval_steps=steps,
        trained_steps=trained,
        tolerance=args.tolerance if args.tolerance is not None else stage.fixed_point_tolerance,
        batch_size=args.batch_size,
        confidence=stage.confidence,
    )
    print("\n" + report(results, trained))
    print(f"\nresults, accuracy-vs-steps and dynamics plots: {out}/")
    return 0
