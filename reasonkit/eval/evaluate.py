"""Evaluation: pass@1 (averaged over n samples), unbiased pass@k and maj@k, with bootstrap confidence
intervals over problems, per benchmark and per difficulty level.

An answer is correct when the reward verifier (the same function GRPO trains with) scores it 1.0; no
second parser. The verifier is called as in training (``rewards.convention``): with every column of the
benchmark, and completions as text or messages by the same rules. The decoding settings are written next to the figures they produced, and every
completion with its answer and score goes to a per-sample JSONL.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import rewards as reward_registry
from reasonkit.config import ConfigError
from reasonkit.data import DataError, PromptFormat, load_examples
from reasonkit.data.benchmarks import Problem, benchmark_name, load_benchmark
from reasonkit.errors import ReasonkitError
from reasonkit.eval.metrics import bootstrap_interval, majority_correct, mean, pass_at_k
from reasonkit.eval.schema import RECIPE_TEST, EvalStage, default_verifier, settings
from reasonkit.latent.engine import latent_engine, read_latent_settings
from reasonkit.manifest import read_manifest
from reasonkit.models import load_tokenizer
from reasonkit.recurrent.engine import Depth, recurrent_engine
from reasonkit.recurrent.evaluate import evaluate_depths
from reasonkit.recurrent.schema import is_recurrent
from reasonkit.rollout import EngineInputs, Rollout, SamplingSettings, make_engine
from reasonkit.stage import StageContext
from reasonkit.tools.generation import generation_for
from reasonkit.tools.loop import tool_metrics, turns_for_log
from reasonkit.tools.settings import ToolSettings
from rewards.contract import THINK_CLOSE, THINK_OPEN, parse_completion
from rewards.convention import call_reward, describe_error


class VerifierError(ReasonkitError, RuntimeError):
    """The verifier raised; the message names it and says what it was given."""


@dataclass
class Judged:
    """Completions and their verdicts, one entry per completion (``n`` per problem, problem by problem)."""

    rollouts: list[Rollout]
    prompts: list  # the prompt each answers, as shown: with tools, an environment's reset text appended
    responses: list[str]  # the whole response the verifier read
    scores: list[float | None]


def evaluate(
    engine,
    tokenizer,
    fmt: PromptFormat,
    problems: list[Problem],
    stage: EvalStage,
    *,
    verifier: str,
    with_traces: bool,
    samples_path: Path | None = None,
    label: str = "eval",
) -> dict:
    """Generate ``num_samples`` completions per problem, judge them, and return the metrics (the caller
    has checked that the problems have the columns the verifier reads: ``check_verifier_columns``)."""
    if stage.max_problems is not None:
        problems = problems[: stage.max_problems]
    n = stage.num_samples
    sampling = SamplingSettings(
        n=n,
        temperature=stage.temperature,
        top_p=stage.top_p,
        max_new_tokens=stage.max_new_tokens,
        seed=stage.seed,
    )
    with tqdm(total=len(problems), desc=f"eval {label}", unit="problem") as bar:
        judged = sample_and_judge(
            engine,
            tokenizer,
            fmt,
            problems,
            sampling,
            verifier,
            with_traces=with_traces,
            progress=bar,
            completions=stage.verifier_completions,
            tools=stage.tools,
        )
    rollouts, scores = judged.rollouts, judged.scores
    correct = [score == 1.0 for score in scores]
    answers = [parse_completion(text).answer for text in judged.responses]

    per_problem = [slice(i * n, (i + 1) * n) for i in range(len(problems))]
    samples = [(answers[rows], correct[rows]) for rows in per_problem]  # per problem
    if samples_path:
        with samples_path.open("w") as out:
            for problem, rows in zip(problems, per_problem, strict=True):
                record = {
                    "prompt": problem.prompt,
                    "gold": problem.answer,
                    "difficulty": problem.difficulty,
                    "completions": [r.text for r in rollouts[rows]],
                    "answers": answers[rows],
                    "scores": scores[rows],
                    "correct": correct[rows],
                }
                if any(r.tools is not None for r in rollouts):  # each completion's calls and their results
                    record["turns"] = [turns_for_log(r.tools) for r in rollouts[rows]]
                out.write(json.dumps(record) + "\n")
    per_sample = len(rollouts) or 1
    result = {
        "n": len(problems),
        "num_samples": n,
        **problem_metrics(samples, stage),
        "format_errors": sum(a is None for a in answers) / per_sample,
        "truncated": sum(r.truncated for r in rollouts) / per_sample,
        "mean_completion_tokens": sum(len(r.completion_ids) for r in rollouts) / per_sample,
    }
    # What answering cost, next to the accuracy: tokens generated per answer (per problem at num_samples 1);
    # a latent model's thoughts are not tokens: its results count them apart (`thoughts`).
    result["generated_tokens"] = result["mean_completion_tokens"]
    # A recurrent-depth model's compute per token: the core iterations behind each generated token.
    steps = [s for r in rollouts for s in r.recurrence_steps or []]
    if steps:
        result["recurrence_steps"] = mean(steps)
        result["recurrence_histogram"] = {str(k): v for k, v in sorted(Counter(steps).items())}
    # With tools: calls per completion, the share that failed, ... (tools/loop.py); nothing without.
    uses = [r.tools for r in rollouts]
    result.update(tool_metrics(uses, sorted({name for use in uses if use for name in use.calls if name})))
    levels = sorted({p.difficulty for p in problems if p.difficulty is not None})
    if levels:
        result["by_difficulty"] = {
            level: {
                "n": sum(p.difficulty == level for p in problems),
                **problem_metrics(
                    [s for p, s in zip(problems, samples, strict=True) if p.difficulty == level], stage
                ),
            }
            for level in levels
        }
    return result


def check_verifier_columns(verifier: str, problems: list[Problem]) -> None:
    """Fail before generating when the verifier needs a column the problems lack, naming those they have."""
    have = set(problems[0].verifier_columns()) if problems else set()
    needed = reward_registry.required_columns(reward_registry.registry.build(verifier))
    missing = [c for c in needed if c not in have]
    if missing:
        raise DataError(
            f"verifier {verifier!r} needs column(s) {missing}; the problems have {sorted(have)}. "
            "Rename the column in the data or choose another verifier."
        )


def sample_and_judge(
    engine,
    tokenizer,
    fmt,
    problems,
    sampling,
    verifier: str,
    with_traces=True,
    progress=None,
    completions: str = "auto",
    tools: ToolSettings | None = None,
) -> Judged:
    """``sampling.n`` completions per problem (with ``tools``: each with its tool turns), judged.

    ``completions``: the shape the verifier reads them in (``rewards.convention.SHAPES``)."""
    repeat = [p for p in problems for _ in range(sampling.n)]
    generation = generation_for(tokenizer, fmt.render, tools, "tools")
    try:
        rows = [{"prompt": p.prompt, **p.verifier_columns()} for p in problems]
        rollouts = generation.generate(engine, rows, sampling, progress=progress)
    finally:
        generation.close()
    # the prompt each completion answers, as shown: with tools, an environment's reset() text appended
    prompts = [r.tools.prompt if r.tools is not None else p.prompt for r, p in zip(rollouts, repeat)]
    # The verifier reads the whole response: a prefilled <think> goes back in front, and a model trained
    # on direct answers gets an empty think block, so its whole output is its answer.
    prefix = THINK_OPEN if fmt.think_prefilled else "" if with_traces else THINK_OPEN + THINK_CLOSE
    responses = [prefix + r.text for r in rollouts]
    columns = {
        name: [p.verifier_columns()[name] for p in repeat]
        for name in (repeat[0].verifier_columns() if repeat else {})
    }
    try:
        scores = call_reward(
            reward_registry.registry.build(verifier),
            prompts,
            responses,
            columns,
            shape=completions,
        )
    except Exception as exc:
        raise VerifierError(f"verifier {verifier!r} raised {describe_error(exc)}") from exc
    return Judged(rollouts, prompts, responses, scores)


def problem_metrics(samples: list[tuple[list, list[bool]]], stage: EvalStage) -> dict:
    """pass@1, pass@k and maj@k for each k, each as {value, low, high}, from (answers, correct) per problem."""
    n = stage.num_samples
    per_problem = {"pass@1": [pass_at_k(n, sum(c), 1) for _, c in samples]}
    for k in stage.k:
        if k > 1:
            per_problem[f"pass@{k}"] = [pass_at_k(n, sum(c), k) for _, c in samples]
        if n > 1:
            per_problem[f"maj@{k}"] = [majority_correct(a, c, k) for a, c in samples]
    metrics = {}
    for name, values in per_problem.items():
        low, high = bootstrap_interval(values, confidence=stage.confidence, seed=stage.seed or 0)
        metrics[name] = {"value": mean(values), "low": low, "high": high}
    metrics["accuracy"] = metrics["pass@1"]["value"]  # the headline figure in summaries
    return metrics


def recipe_benchmarks(ctx: StageContext, stage: EvalStage) -> dict[str, list[Problem]]:
    if stage.benchmarks:
        return {benchmark_name(b): load_benchmark(b) for b in stage.benchmarks}
    examples, _ = load_examples(ctx.recipe.data, "test", need_trace=False)
    return {RECIPE_TEST: [Problem(ex.prompt, ex.answer) for ex in examples]}


def run_eval(ctx: StageContext, stage: EvalStage, models: dict[str, str]) -> dict:
    """Evaluate each named model on each benchmark: ``{"models": {model: {benchmark: metrics}}}``.

    Under a multi-process launch only the main process evaluates (the others wait): generation is not
    sharded across processes yet, and duplicated work would only write the same files twice.
    """
    if not ctx.is_main_process:
        return {"models": {}}
    verifier = stage.verifier or default_verifier(ctx.recipe)
    benchmarks = recipe_benchmarks(ctx, stage)
    results = {}
    for label, path in models.items():
        results[label] = {}
        for name, problems in benchmarks.items():
            results[label][name] = evaluate_saved_model(
                path, stage, problems, verifier, ctx.directory, label, name, ctx.recipe.model.dtype
            )
    return {"models": results, "verifier": verifier}


def evaluate_saved_model(
    path: str,
    stage: EvalStage,
    problems: list[Problem],
    verifier: str,
    out: Path,
    label: str,
    benchmark: str,
    dtype: str = "float32",
) -> dict:
    """Load a saved model (its manifest says how its prompts were formatted), evaluate it, write the files."""
    manifest = read_manifest(path) or {}
    fmt_info = manifest.get("format", {"traces": True, "think_prefilled": False})
    check_verifier_columns(verifier, problems)  # before an engine starts
    tokenizer = load_tokenizer(path)
    inputs = EngineInputs(
        path, tokenizer, dtype=dtype, seed=stage.seed or 0, batch_size=stage.batch_size, vllm=stage.vllm
    )
    fmt = PromptFormat(think_prefilled=fmt_info["think_prefilled"])
    stem = f"{label}.{benchmark}"
    recurrent = is_recurrent(path)
    if (stage.recurrences or stage.exit_kl is not None) and not recurrent:
        raise ConfigError(
            f"recurrences/exit_kl set the test-time depth of a recurrent-depth model; {path} has none"
        )
    latent = read_latent_settings(path)  # a latent model thinks before it writes, on transformers
    if latent and stage.tools is not None:
        raise ConfigError(f"{path} is a latent model: it cannot call tools (evaluate it without tools)")
    if recurrent:
        engine = recurrent_engine(stage.engine, inputs, Depth())
    elif latent:
        engine = latent_engine(stage.engine, inputs, latent)
    else:
        engine = make_engine(stage.engine, inputs)

    def evaluate_at(suffix: str = "") -> dict:
        return evaluate(
            engine,
            tokenizer,
            fmt,
            problems,
            stage,
            verifier=verifier,
            with_traces=fmt_info["traces"],
            samples_path=out / f"{stem}{suffix}.samples.jsonl",
            label=stem + suffix,
        )

    try:
        if recurrent:  # accuracy against the test-time depth, and the state's dynamics
            prompts = [fmt.render(tokenizer, p.prompt) for p in problems]
            result = evaluate_depths(
                engine, evaluate_at, stage.recurrences, stage.exit_kl, prompts, out / "diagnostics", stem
            )
        else:
            result = evaluate_at()
    finally:
        engine.close()
    if latent:
        result["thoughts"] = latent.thoughts
    decoding = {key: value for key, value in settings(stage).items() if key != "models"}
    record = {"model": path, "benchmark": benchmark, **result, "verifier": verifier, "decoding": decoding}
    (out / f"{stem}.results.json").write_text(json.dumps(record, indent=2))
    pass1 = result["pass@1"]
    print(
        f"{label} on {benchmark}: pass@1 {pass1['value']:.1%} [{pass1['low']:.1%}, {pass1['high']:.1%}] "
        f"on {result['n']} problems",
        flush=True,
    )
    return result
