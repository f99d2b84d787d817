"""``reasonkit eval MODEL --benchmark FILE_OR_HUB_ID ...``: the evaluation stage without a recipe."""

from __future__ import annotations

from pathlib import Path


def add_command(commands) -> None:
    cmd = commands.add_parser("eval", help="pass@k / maj@k of a saved model on benchmarks")
    cmd.add_argument("model", help="a saved model directory (a stage's model/, or any transformers model)")
    cmd.add_argument(
        "--benchmark",
        action="append",
        required=True,
        metavar="PATH",
        help="a local .jsonl/.json/.parquet/.csv or a hub id, gsm8k / math / code / plain shaped; repeat for several",
    )
    cmd.add_argument("--format", default="auto", choices=["auto", "gsm8k", "math", "code", "plain"])
    cmd.add_argument("--split", default="test", help="hub datasets: the split")
    cmd.add_argument("--verifier", default="exact_answer", help="the reward that judges answers (e.g. math)")
    cmd.add_argument("--num-samples", type=int, default=1)
    cmd.add_argument("--k", type=int, nargs="+", default=[1], help="pass@k and maj@k for each k")
    cmd.add_argument("--temperature", type=float, default=0.0)
    cmd.add_argument("--top-p", type=float, default=1.0)
    cmd.add_argument("--max-new-tokens", type=int, default=1024)
    cmd.add_argument("--max-problems", type=int)
    cmd.add_argument("--batch-size", type=int, default=64)
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    cmd.add_argument("--output", default="eval-results", help="folder for the results and per-sample files")


def run(args) -> int:
    from reasonkit.config import BenchmarkSource, ConfigError, EvalStage, check_eval_stage
    from reasonkit.data.benchmarks import benchmark_name, load_benchmark
    from reasonkit.evaluate import evaluate_saved_model
    from reasonkit.metrics import format_table

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
