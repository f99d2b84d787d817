"""The evaluation stage: accuracy on held-out problems, answers read with the format contract's parser.

Accuracy is the mean over problems and over the ``num_samples`` completions of each (pass@1 averaged
over samples); greedy decoding (temperature 0) takes one sample per problem.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from reasonkit.config import EvalStage
from reasonkit.data import PromptFormat, TraceExample, load_examples
from reasonkit.format import parse_completion
from reasonkit.manifest import read_manifest
from reasonkit.metrics import JsonlWriter
from reasonkit.models import load_model, load_tokenizer, whole_weights
from reasonkit.rollout import SamplingSettings, TransformersEngine
from reasonkit.stage import StageContext
from rewards.answer import same_answer


@dataclass
class EvalResult:
    accuracy: float
    n: int  # problems
    num_samples: int  # completions per problem
    format_errors: float  # fraction of completions with no readable answer
    truncated: float  # fraction that hit max_new_tokens
    mean_completion_tokens: float


def evaluate(
    model,
    tokenizer,
    fmt: PromptFormat,
    examples: list[TraceExample],
    stage: EvalStage,
    *,
    with_traces: bool,
    samples_path: Path | None = None,
    label: str = "eval",
) -> EvalResult:
    """Generate for every example and score it; writes one JSON line per problem to ``samples_path``."""
    if stage.max_problems is not None:
        examples = examples[: stage.max_problems]
    sampling = SamplingSettings(
        n=stage.num_samples,
        temperature=stage.temperature,
        top_p=stage.top_p,
        max_new_tokens=stage.max_new_tokens,
        seed=stage.seed,
    )
    engine = TransformersEngine(model, tokenizer, batch_size=stage.batch_size)
    prompts = [fmt.render(tokenizer, ex.prompt) for ex in examples]
    with tqdm(total=len(prompts), desc=f"eval {label}", unit="problem") as bar:
        rollouts = engine.generate(prompts, sampling, progress=bar)
    writer = JsonlWriter(samples_path) if samples_path else None
    if samples_path and samples_path.exists():
        samples_path.unlink()
    correct = unreadable = truncated = tokens = 0
    for index, ex in enumerate(examples):
        group = rollouts[index * sampling.n : (index + 1) * sampling.n]
        answers = [
            parse_completion(r.text, think_prefilled=fmt.think_prefilled, require_think=with_traces).answer
            for r in group
        ]
        scores = [same_answer(a, ex.answer) for a in answers]
        correct += sum(scores)
        unreadable += sum(a is None for a in answers)
        truncated += sum(r.truncated for r in group)
        tokens += sum(len(r.completion_ids) for r in group)
        if writer:
            writer.write(
                {
                    "prompt": ex.prompt,
                    "gold": ex.answer,
                    "completions": [r.text for r in group],
                    "answers": answers,
                    "correct": scores,
                }
            )
    total = max(1, len(examples) * sampling.n)
    return EvalResult(
        accuracy=correct / total,
        n=len(examples),
        num_samples=sampling.n,
        format_errors=unreadable / total,
        truncated=truncated / total,
        mean_completion_tokens=tokens / total,
    )


def save_result(result: EvalResult, path: Path, decoding: EvalStage) -> None:
    """The figures with the decoding settings that produced them."""
    path.write_text(json.dumps({**asdict(result), "decoding": asdict(decoding)}, indent=2))


def run_eval(ctx: StageContext, stage: EvalStage, models: dict[str, str]) -> dict:
    """Evaluate each named model on the recipe's held-out problems; metrics per model.

    Under a multi-process launch only the main process evaluates (the others wait): generation is not
    sharded across ranks yet, and duplicated work would only write the same files twice.
    """
    if not ctx.is_main_process:
        return {"models": {}}
    examples, _ = load_examples(ctx.recipe.data, "test", need_trace=False)
    results = {}
    for label, path in models.items():
        manifest = read_manifest(path) or {}
        fmt_info = manifest.get("format", {"traces": True, "think_prefilled": False})
        with whole_weights():
            model = load_model(path, ctx.recipe.model.dtype, ctx.recipe.model.attn_implementation)
        tokenizer = load_tokenizer(path)
        fmt = PromptFormat(think_prefilled=fmt_info["think_prefilled"])
        result = evaluate(
            model,
            tokenizer,
            fmt,
            examples,
            stage,
            with_traces=fmt_info["traces"],
            samples_path=ctx.directory / f"{label}.samples.jsonl",
            label=label,
        )
        save_result(result, ctx.directory / f"{label}.results.json", stage)
        print(f"{label}: accuracy {result.accuracy:.1%} on {result.n} problems", flush=True)
        results[label] = asdict(result)
    return {"models": results}
