"""``reasonkit generate TEACHER --prompts FILE --output traces.jsonl``: verified teacher traces for SFT."""

from __future__ import annotations

from pathlib import Path

from reasonkit.rewards_command import add_verifier_completions_option


def add_command(commands) -> None:
    summary = "sample, verify and keep teacher traces for distillation"
    cmd = commands.add_parser("generate", help=summary, description=summary)
    cmd.add_argument("teacher", help="the teacher model: a hub id or a local directory")
    cmd.add_argument(
        "--prompts",
        required=True,
        metavar="PATH",
        help="prompts with gold answers: gsm8k / math / code / plain shaped file or hub id",
    )
    cmd.add_argument(
        "--format",
        default="auto",
        choices=["auto", "gsm8k", "math", "code", "plain"],
        help="the prompts' shape (default: told apart by their columns)",
    )
    cmd.add_argument("--split", default="train", help="hub datasets: the split (default train)")
    cmd.add_argument("--max-prompts", type=int, metavar="N", help="use the first N prompts only")
    cmd.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the JSONL to write (prompt, trace, answer); resumed if present",
    )
    cmd.add_argument(
        "--num-samples", type=int, default=4, metavar="N", help="completions per prompt (default 4)"
    )
    cmd.add_argument(
        "--keep",
        default="first",
        choices=["first", "all", "shortest"],
        help="which correct ones to keep per prompt (default first)",
    )
    cmd.add_argument(
        "--verifier",
        default="exact_answer",
        metavar="SPEC",
        help="the reward that judges an answer: a built-in (math), package.module:function or "
        "file.py:function (default exact_answer)",
    )
    add_verifier_completions_option(cmd)
    cmd.add_argument(
        "--max-trace-tokens", type=int, metavar="N", help="drop completions longer than N tokens"
    )
    cmd.add_argument(
        "--decontaminate",
        action="append",
        default=[],
        metavar="EVAL_FILE",
        help="drop prompts sharing an n-gram with it; repeat for several",
    )
    cmd.add_argument(
        "--ngram", type=int, default=13, metavar="N", help="n-gram length for --decontaminate (default 13)"
    )
    cmd.add_argument(
        "--engine",
        default="auto",
        help="auto (vLLM where it is installed, else transformers), vllm, transformers, or a class of "
        "your own as package.module:Class (default auto)",
    )
    cmd.add_argument("--temperature", type=float, default=0.7, metavar="T", help="(default 0.7)")
    cmd.add_argument("--top-p", type=float, default=1.0, metavar="P", help="(default 1.0)")
    cmd.add_argument("--max-new-tokens", type=int, default=4096, metavar="N", help="(default 4096)")
    cmd.add_argument(
        "--chunk-size",
        type=int,
        default=64,
        metavar="N",
        help="prompts per chunk, the unit of resumption (default 64)",
    )
    cmd.add_argument(
        "--think-prefill", action="store_true", help="open <think> in the prompt for the teacher"
    )
    cmd.add_argument(
        "--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"], help="(default bfloat16)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="(default 0)")


def run(args) -> int:
    import rewards
    from reasonkit.config import ConfigError
    from reasonkit.eval.schema import BenchmarkSource
    from reasonkit.data import prompt_format
    from reasonkit.data.benchmarks import load_benchmark
    from reasonkit.eval.generate import Decontaminator, GenerateSettings, generate_traces
    from reasonkit.metrics import format_table
    from reasonkit.models import load_tokenizer
    from reasonkit.rollout import EngineInputs, make_engine

    try:
        rewards.get(args.verifier)
    except rewards.RewardNotFound as exc:
        raise ConfigError(f"--verifier: {exc}") from None
    problems = load_benchmark(
        BenchmarkSource(args.prompts, format=args.format, split=args.split, max_rows=args.max_prompts)
    )
    decontaminator = None
    if args.decontaminate:
        texts = [
            p.prompt
            for path in args.decontaminate
            for p in load_benchmark(BenchmarkSource(path, split="test"))
        ]
        decontaminator = Decontaminator(texts, args.ngram)
    tokenizer = load_tokenizer(args.teacher)
    engine = make_engine(args.engine, EngineInputs(args.teacher, tokenizer, dtype=args.dtype, seed=args.seed))
    settings = GenerateSettings(
        num_samples=args.num_samples,
        keep=args.keep,
        verifier=args.verifier,
        verifier_completions=args.completions,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        max_trace_tokens=args.max_trace_tokens,
        chunk_size=args.chunk_size,
        seed=args.seed,
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = generate_traces(
        engine,
        tokenizer,
        prompt_format(tokenizer, args.think_prefill),
        problems,
        out,
        settings,
        decontaminator,
    )
    print("\n" + format_table([{"step": k, "count": v} for k, v in report.items()], ["step", "count"]))
    print(f"\nkept triples: {out} (train on it with data.train.path; prompt/trace/answer columns)")
    return 0
