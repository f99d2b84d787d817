"""A latent model evaluated during its stage: held-out pass@1 and generated tokens with the eval stage's own
``evaluate`` (the same verifier, intervals and per-sample file), and its thoughts decoded."""

from __future__ import annotations

from reasonkit.data import DataError, load_examples
from reasonkit.data.benchmarks import Problem
from reasonkit.eval.evaluate import check_verifier_columns, evaluate
from reasonkit.eval.schema import EvalStage, default_verifier
from reasonkit.latent.diagnostics import decode_thoughts, write_diagnostics
from reasonkit.latent.engine import LatentEngine
from reasonkit.latent.schema import LatentStage
from reasonkit.latent.splitters import SPLITTERS
from reasonkit.stage import StageContext


def evaluate_in_training(ctx: StageContext, stage: LatentStage, engine: LatentEngine, fmt, name: str) -> dict:
    """``name``'s figures on the recipe's test problems (greedy), written to ``<stage>/eval/``; its thoughts
    decoded to ``<stage>/diagnostics/<name>.json``."""
    settings = stage.eval
    examples, _ = load_examples(ctx.recipe.data, "test", need_trace=False)
    if settings.max_problems is not None:
        examples = examples[: settings.max_problems]
    problems = [Problem(ex.prompt, ex.answer) for ex in examples]
    verifier = default_verifier(ctx.recipe)
    check_verifier_columns(verifier, problems)
    decoding = EvalStage(
        temperature=0.0, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size, seed=0
    )
    engine.batch_size = settings.batch_size
    out = ctx.directory / "eval"
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate(
        engine, engine.tokenizer, fmt, problems, decoding, verifier=verifier, with_traces=True,
        samples_path=out / f"{name}.samples.jsonl", label=name,
    )  # fmt: skip
    result["thoughts"] = engine.settings.thoughts
    print(
        f"{name}: pass@1 {result['pass@1']['value']:.1%} with {result['generated_tokens']:.1f} generated tokens "
        f"and {engine.settings.thoughts} thoughts per problem",
        flush=True,
    )
    if settings.diagnose_problems and engine.settings.thoughts and engine.settings.feedback:
        write_diagnostics(ctx.directory / "diagnostics", name, diagnose(ctx, stage, engine, fmt))
    return result


def diagnose(ctx: StageContext, stage: LatentStage, engine: LatentEngine, fmt) -> dict:
    """The thoughts of the first ``eval.diagnose_problems`` test problems, against their traces' steps when
    the test data has traces."""
    count = stage.eval.diagnose_problems
    try:
        examples, _ = load_examples(ctx.recipe.data, "test", need_trace=True)
        split = SPLITTERS.resolve(stage.splitter)
        steps = [split(ex.trace) for ex in examples[:count]]
    except DataError:  # test data without traces: the tokens alone
        examples, _ = load_examples(ctx.recipe.data, "test", need_trace=False)
        steps = None
    prompts = [fmt.render(engine.tokenizer, ex.prompt) for ex in examples[:count]]
    return decode_thoughts(
        engine.model, engine.tokenizer, engine.settings, prompts, steps, stage.thoughts_per_step
    )
