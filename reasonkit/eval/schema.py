"""The ``type: eval`` section of a recipe (also what ``reasonkit eval`` runs): its settings, what makes
one that cannot run, and the verifier it judges answers with by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import rewards
from reasonkit.config import Recipe
from reasonkit.engine_settings import VLLMSettings
from reasonkit.tools.settings import ToolSettings

RECIPE_TEST = "test"  # the benchmark name of the recipe's own held-out data


@dataclass
class BenchmarkSource:
    """A benchmark from a local file or hub id: gsm8k (question/answer with ####), math (problem/solution
    with \\boxed{}) or plain (prompt/answer) shape; auto tells them apart by their columns."""

    path: str
    name: str | None = None  # in the results; null: the file's stem
    format: Literal["auto", "gsm8k", "math", "code", "plain"] = "auto"
    split: str = "test"  # hub datasets
    subset: str | None = None
    difficulty_column: str | None = None  # results per value of this column; null: `level` when present
    max_rows: int | None = None


@dataclass
class EvalStage:
    """pass@k and maj@k with confidence intervals, answers judged by a reward verifier."""

    type: Literal["eval"] = "eval"
    # What to evaluate: earlier stages' outputs, and/or "model" (the recipe's model as loaded).
    # Empty: every earlier training stage.
    models: list[str] = field(default_factory=list)
    benchmarks: list[BenchmarkSource] = field(default_factory=list)  # empty: the recipe's test data
    # The reward that judges an answer correct (score 1.0); null: the one the recipe's GRPO stage
    # judges accuracy with (math when it trains with math), else exact_answer.
    verifier: str | None = None
    # How the verifier reads completions: auto (its annotation, else text: benchmark prompts are strings),
    # text, or conversational (messages, as TRL's and open-r1's rewards read them).
    verifier_completions: Literal["auto", "text", "conversational"] = "auto"
    num_samples: int = 1  # n completions per problem: pass@1 is averaged over them
    k: list[int] = field(default_factory=lambda: [1])  # pass@k and maj@k for each k <= num_samples
    confidence: float = 0.95  # of the bootstrap intervals (over problems)
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 128  # completions (problems x num_samples) per generate call (transformers engine)
    max_problems: int | None = None
    seed: int | None = None
    engine: str = "auto"  # as in a GRPO stage: auto, vllm, transformers or a class of your own
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    # A recurrent-depth model (model.tiny.recurrent) is evaluated at its training mean r, and also at each
    # r listed here (deeper than training saw, too): `by_recurrence` in its results, diagnostics/recurrence.png.
    recurrences: list[int] = field(default_factory=list)
    # ...and with the adaptive exit: each token stops iterating once KL(p_{i-1} ‖ p_i) of its next-token
    # distribution is below this (Huginn: 5e-4), at most the deepest r; null: no adaptive run.
    exit_kl: float | None = None
    # Evaluation with tools: the model may call these while it answers (the multi-turn loop, on any
    # engine); the verifier judges the final text, and the results add the tool metrics. The same section
    # as GRPO's.
    tools: ToolSettings | None = None


def validate(name: str, stage: EvalStage, recipe: Recipe, trained: list[str]) -> list[str]:
    errors = []
    for target in stage.models:
        if target != "model" and target not in trained:
            errors.append(
                f"stages.{name}.models: {target!r} is not 'model' nor an earlier training stage ({trained})"
            )
    if not stage.models and not trained:
        errors.append(
            f"stages.{name}: nothing to evaluate; list models: [model] or put it after a training stage"
        )
    if recipe.data.task is None and recipe.data.test is None and not stage.benchmarks:
        errors.append(f"stages.{name}: an eval stage needs benchmarks, data.test or a built-in data.task")
    return errors + check_eval_stage(name, stage, recipe.model.path)


def check_eval_stage(name: str, stage: EvalStage, model_path: str | None) -> list[str]:
    """Eval settings that cannot work (also checked for `reasonkit eval`, which has no recipe);
    ``model_path``: whose chat template must render tool calls when the stage has tools (None: a tiny
    model built on the spot, whose template does)."""
    from reasonkit.rollout import check_engine  # the engines' modules import torch

    errors = []
    too_large = [k for k in stage.k if not 1 <= k <= stage.num_samples]
    if too_large:
        errors.append(
            f"stages.{name}.k: {too_large} outside 1..num_samples={stage.num_samples}; "
            f"raise num_samples to {max(too_large)} or drop them"
        )
    if stage.num_samples > 1 and stage.temperature == 0:
        errors.append(
            f"stages.{name}: num_samples={stage.num_samples} with temperature 0 repeats one greedy answer"
        )
    if any(r < 1 for r in stage.recurrences):
        errors.append(f"stages.{name}.recurrences: {stage.recurrences}; each r is at least 1 iteration")
    if stage.exit_kl is not None and stage.exit_kl <= 0:
        errors.append(f"stages.{name}.exit_kl: {stage.exit_kl}; a KL threshold above 0 (Huginn: 5e-4)")
    if stage.verifier is not None:
        try:
            rewards.get(stage.verifier)
        except rewards.RewardNotFound as exc:
            errors.append(f"stages.{name}.verifier: {exc}")
    if stage.tools is not None:
        from reasonkit.tools.checks import tools_problems  # loads the tools and the tokenizer

        errors += tools_problems(stage.tools, f"stages.{name}.tools", model_path)
    return errors + check_engine(f"stages.{name}.engine", stage.engine)


def settings(stage: EvalStage) -> dict:
    """How an eval stage evaluates (what the dry run prints and trackers record as its objective)."""
    return {key: value for key, value in asdict(stage).items() if key not in ("type", "benchmarks")}


def default_verifier(recipe: Recipe) -> str:
    """The reward the recipe's training judges answers with (a stage section's ``judged_by``, as GRPO's
    has), else exact_answer."""
    for stage in recipe.stages.values():
        if hasattr(stage, "judged_by"):
            return stage.judged_by()
    return "exact_answer"
