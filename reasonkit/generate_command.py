"""``reasonkit generate TEACHER --prompts FILE --output traces.jsonl``: verified teacher traces for SFT."""

from __future__ import annotations

from pathlib import Path


def add_command(commands) -> None:
    cmd = commands.add_parser("generate", help="sample, verify and keep teacher traces for distillation")
    cmd.add_argument("teacher", help="the teacher model: a hub id or a local directory")
    cmd.add_argument(
        "--prompts",
        required=True,
        help="prompts with gold answers: gsm8k / math / code / plain shaped file or hub id",
    )
    cmd.add_argument("--format", default="auto", choices=["auto", "gsm8k", "math", "code", "plain"])
    cmd.add_argument("--split", default="train", help="hub datasets: the split")
    cmd.add_argument("--max-prompts", type=int)
    cmd.add_argument(
        "--output", required=True, help="the JSONL to write (prompt, trace, answer); resumed if present"
    )
    cmd.add_argument("--num-samples", type=int, default=4, help="completions per prompt")
    cmd.add_argument(
        "--keep", default="first", choices=["first", "all", "shortest"], help="which correct ones"
    )
    cmd.add_argument(
        "--verifier", default="exact_answer", help="the reward that judges an answer (e.g. math)"
    )
    cmd.add_argument("--max-trace-tokens", type=int, help="drop completions longer than this")
    cmd.add_argument(
        "--decontaminate",
        action="append",
        default=[],
        metavar="EVAL_FILE",
        help="drop prompts sharing an n-gram with it",
    )
    cmd.add_argument("--ngram", type=int, default=13)
    cmd.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers"])
    cmd.add_argument("--temperature", type=float, default=0.7)
    cmd.add_argument("--top-p", type=float, default=1.0)
    cmd.add_argument("--max-new-tokens", type=int, default=4096)
    cmd.add_argument("--chunk-size", type=int, default=64, help="prompts per chunk (the unit of resumption)")
    cmd.add_argument(
        "--think-prefill", action="store_true", help="open <think> in the prompt for the teacher"
    )
    cmd.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    cmd.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import rewards
    from reasonkit.config import BenchmarkSource, ConfigError
    from reasonkit.data import prompt_format
    from reasonkit.data.benchmarks import load_benchmark
    from reasonkit.generate import Decontaminator, GenerateSettings, generate_traces
    from reasonkit.metrics import format_table
    from reasonkit.models import load_model, load_tokenizer
    from reasonkit.rollout import TransformersEngine
    from reasonkit.rollout.vllm_engine import VLLMEngine, vllm_available

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
    if args.engine == "vllm" or (args.engine == "auto" and vllm_available()):
        engine = VLLMEngine(args.teacher, tokenizer, dtype=args.dtype, seed=args.seed)
    else:
        engine = TransformersEngine(load_model(args.teacher, args.dtype), tokenizer)
    settings = GenerateSettings(
        num_samples=args.num_samples,
        keep=args.keep,
        verifier=args.verifier,
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
