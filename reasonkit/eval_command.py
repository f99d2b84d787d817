"""``reasonkit eval MODEL --benchmark FILE_OR_HUB_ID ...``: the evaluation stage without a recipe."""

from __future__ import annotations

from pathlib import Path

from reasonkit.rewards_command import add_verifier_completions_option


def add_command(commands) -> None:
    summary = "pass@k / maj@k of a saved model on benchmarks, with confidence intervals"
    cmd = commands.add_parser("eval", help=summary, description=summary)
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
        "--format",
        default="auto",
        choices=["auto", "gsm8k", "math", "code", "plain"],
        help="the benchmarks' shape (default: told apart by their columns)",
    )
    cmd.add_argument("--split", default="test", help="hub datasets: the split (default test)")
    cmd.add_argument(
        "--verifier",
        default="exact_answer",
        metavar="SPEC",
        help="the reward that judges answers: a built-in (math), package.module:function or file.py:function "
        "(default exact_answer)",
    )
    add_verifier_completions_option(cmd)
    cmd.add_argument(
        "--num-samples", type=int, default=1, metavar="N", help="completions per problem (default 1)"
    )
    cmd.add_argument(
        "--k", type=int, nargs="+", default=[1], metavar="K", help="pass@k and maj@k for each k (default 1)"
    )
    cmd.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 is greedy (default 0)")
    cmd.add_argument("--top-p", type=float, default=1.0, metavar="P", help="(default 1.0)")
    cmd.add_argument("--max-new-tokens", type=int, default=1024, metavar="N", help="(default 1024)")
    cmd.add_argument("--max-problems", type=int, metavar="N", help="evaluate the first N problems only")
    cmd.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="completions per generate call (default 64)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="(default 0)")
    cmd.add_argument(
        "--engine",
        default="auto",
        help="auto (vLLM where it is installed, else transformers), vllm, transformers, or a class of "
        "your own as package.module:Class (default auto)",
    )
    cmd.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="(default float32)"
    )
    cmd.add_argument(
        "--output",
        default="eval-results",
        metavar="DIR",
        help="folder for the results and per-sample files (default eval-results)",
    )


def run(args) -> int:
    from reasonkit.config import ConfigError
    from reasonkit.eval.schema import BenchmarkSource, EvalStage, check_eval_stage
    from reasonkit.data.benchmarks import benchmark_name, load_benchmark
    from reasonkit.eval.evaluate import evaluate_saved_model
    from reasonkit.metrics import format_table
    from reasonkit.trm.eval_command import is_trm_model

    if is_trm_model(args.model):
        from reasonkit.trm import eval_command as trm_eval

        return trm_eval.run(args)
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
    )
    problems = check_eval_stage("eval", stage)  # the checks a recipe's eval stage gets
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
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("\n" + format_table(rows, columns))
    print(f"\nresults and per-sample completions: {out}/")
    return 0
