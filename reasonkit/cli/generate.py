"""``reasonkit generate TEACHER --prompts FILE --output traces.jsonl``: verified teacher traces for SFT."""

from __future__ import annotations

from pathlib import Path

from reasonkit.cli.options import (
    add_dtype_option,
    add_engine_option,
    add_format_option,
    add_sampling_options,
    add_seed_option,
    add_tool_options,
    add_verifier_options,
    schema_choices,
    schema_default,
    tool_settings,
)
from reasonkit.eval.generate import GenerateSettings


def add_command(commands) -> None:
    summary = "sample, verify and keep teacher traces for distillation"
    cmd = commands.add_parser("generate", help=summary, description=summary)
    cmd.set_defaults(handler=run, uses_libraries=True, library_log=library_log)
    cmd.add_argument("teacher", help="the teacher model: a hub id or a local directory")
    cmd.add_argument(
        "--prompts",
        required=True,
        metavar="PATH",
        help="prompts with gold answers: gsm8k / math / code / plain shaped file or hub id",
    )
    add_format_option(cmd, "prompts")
    cmd.add_argument("--split", default="train", help="hub datasets: the split (default %(default)s)")
    cmd.add_argument("--max-prompts", type=int, metavar="N", help="use the first N prompts only")
    cmd.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the JSONL to write (prompt, trace, answer); resumed if present",
    )
    cmd.add_argument(
        "--num-samples",
        type=int,
        default=schema_default(GenerateSettings, "num_samples"),
        metavar="N",
        help="completions per prompt (default %(default)s)",
    )
    cmd.add_argument(
        "--keep",
        default=schema_default(GenerateSettings, "keep"),
        choices=schema_choices(GenerateSettings, "keep"),
        help="which correct ones to keep per prompt (default %(default)s)",
    )
    add_verifier_options(cmd, GenerateSettings, default=schema_default(GenerateSettings, "verifier"))
    cmd.add_argument(
        "--max-trace-tokens",
        type=int,
        default=schema_default(GenerateSettings, "max_trace_tokens"),
        metavar="N",
        help="drop completions longer than N tokens",
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
    add_engine_option(cmd, default="auto")
    add_tool_options(cmd)
    add_sampling_options(cmd, GenerateSettings)
    cmd.add_argument(
        "--chunk-size",
        type=int,
        default=schema_default(GenerateSettings, "chunk_size"),
        metavar="N",
        help="prompts per chunk, the unit of resumption (default %(default)s)",
    )
    cmd.add_argument(
        "--think-prefill", action="store_true", help="open <think> in the prompt for the teacher"
    )
    add_dtype_option(cmd, default="bfloat16")
    add_seed_option(cmd, default=schema_default(GenerateSettings, "seed"))


def library_log(args) -> Path:
    """Where the libraries' log records go: beside the traces (traces.log for traces.jsonl)."""
    path = Path(args.output).with_suffix(".log")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run(args) -> int:
    import rewards
    from reasonkit.config import ConfigError
    from reasonkit.data import prompt_format
    from reasonkit.data.benchmarks import load_benchmark
    from reasonkit.eval.generate import Decontaminator, generate_traces
    from reasonkit.eval.schema import BenchmarkSource
    from reasonkit.metrics import format_table
    from reasonkit.models import load_tokenizer
    from reasonkit.rollout import EngineInputs, make_engine
    from reasonkit.tools.checks import tools_problems

    try:
        rewards.get(args.verifier)
    except rewards.RewardNotFound as exc:
        raise ConfigError(f"--verifier: {exc}") from None
    tools = tool_settings(args)
    if tools is not None:
        refused = tools_problems(tools, "tools", args.teacher)
        if refused:
            raise ConfigError("; ".join(refused))
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
        tools=tools,
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
    columns = "messages (SFT with the same tools)" if tools else "prompt/trace/answer columns"
    print(f"\nkept completions: {out} (train on it with data.train.path; {columns})")
    return 0
