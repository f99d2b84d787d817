"""The ``type: eval`` stage as the stage table sees it: its data check, settings, summary rows and run.

Light: the engines and models are imported when the stage runs.
"""

from __future__ import annotations

import dataclasses

from reasonkit.eval.schema import RECIPE_TEST, EvalStage, default_verifier, settings, validate
from reasonkit.stage import StageContext, StageType


def check_data(recipe, data, rows: int, stage: EvalStage) -> list[str]:
    """--dry-run: the verifier, and a few problems of each benchmark (or the recipe's test data) with gold answers."""
    from reasonkit.data import load_examples
    from reasonkit.data.benchmarks import benchmark_name, load_benchmark

    lines = [f"verifier: {stage.verifier or default_verifier(recipe)}"]
    if stage.tools is not None:  # validate loaded them and checked the chat template
        tools = stage.tools
        named = ", ".join(
            tools.functions
            + ([f"environments {tools.environment_factory}"] if tools.environment_factory else [])
        )
        lines.append(f"tools: {named}; at most {tools.max_calls} calls per completion")
    for source in stage.benchmarks:
        problems = load_benchmark(dataclasses.replace(source, max_rows=rows))
        lines.append(f"benchmark {benchmark_name(source)}: {len(problems)} sample problems with gold answers")
    if not stage.benchmarks:
        examples, _ = load_examples(data, "test", need_trace=False)
        lines.append(f"test data: {len(examples)} sample problems with gold answers")
    return lines


def summary_rows(name: str, summary: dict) -> list[dict]:
    """A row per model and benchmark: pass@1 with its interval, the stage's wall time on the first."""
    results = [(m, b, r) for m, by_benchmark in summary["models"].items() for b, r in by_benchmark.items()]
    rows = []
    for i, (model, benchmark, result) in enumerate(results):
        pass1 = result["pass@1"]
        label = model if benchmark == RECIPE_TEST else f"{model} on {benchmark}"
        rows.append(
            {
                "stage": name,
                "model": label,
                "accuracy": pass1["value"],
                "CI": f"{pass1['low']:.3f}-{pass1['high']:.3f}" if result["n"] > 1 else None,
                "n": result["n"],
                "tokens": round(result["generated_tokens"], 1) if "generated_tokens" in result else None,
                "thoughts": result.get("thoughts"),
                "iterations": result.get("recurrence_steps"),
                "tool_calls": result.get("tools/calls_per_completion"),
                "failed_calls": result.get("tools/failed_share"),
                "format_errors": result["format_errors"],
                "seconds": summary["wall_seconds"] if i == 0 else None,  # the stage's, shown once
            }
        )
        # A recurrent-depth model at each test-time depth, a row each (r=1, r=16, exit, ...).
        for depth, at_depth in result.get("by_recurrence", {}).items():
            rows.append(
                {
                    "stage": name,
                    "model": f"{label} {depth}",
                    "accuracy": at_depth["pass@1"]["value"],
                    "tokens": round(at_depth["generated_tokens"], 1),
                    "iterations": round(at_depth["recurrence_steps"], 2),
                    "format_errors": at_depth["format_errors"],
                }
            )
    return rows


def run(ctx: StageContext, stage: EvalStage, resume: bool = False) -> dict:
    """The models the stage names, or every earlier training stage's."""
    from reasonkit.eval.evaluate import run_eval

    targets = stage.models or [name for name in ctx.models if name != "model"]
    return run_eval(ctx, stage, {target: ctx.models[target] for target in targets})


STAGE = StageType(EvalStage, validate, check_data, settings, summary_rows, run, trains=False)
