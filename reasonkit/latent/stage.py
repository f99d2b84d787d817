"""The ``type: latent`` stage as the stage table sees it: its data check, objective, summary rows and run.

Light: torch, transformers and the trainer are imported when the stage runs.
"""

from __future__ import annotations

from reasonkit.latent.schema import LatentStage, objective, validate
from reasonkit.stage import StageContext, StageType, training_row


def check_data(recipe, data, rows: int, stage: LatentStage) -> list[str]:
    """--dry-run: the first rows of the training data, their traces split into steps."""
    from reasonkit.data import load_examples
    from reasonkit.latent.splitters import SPLITTERS

    examples, report = load_examples(data, "train", need_trace=True)
    split = SPLITTERS.resolve(stage.splitter)
    steps = [len(split(ex.trace)) for ex in examples]
    fewer = sum(n < stage.max_stage for n in steps)
    return [
        f"train data: {len(examples)} of {report.rows} rows read follow the format contract",
        f"traces split by {stage.splitter}: {min(steps, default=0)}-{max(steps, default=0)} steps; {fewer} "
        f"with fewer than max_stage={stage.max_stage} (all their steps become thoughts at the later stages)",
    ]


def summary_rows(name: str, summary: dict) -> list[dict]:
    """The training row, then one per evaluated curriculum stage: accuracy with generated tokens and thoughts."""
    rows = [training_row(name, summary)]
    for model, by_benchmark in summary.get("models", {}).items():
        result = by_benchmark["test"]
        pass1 = result["pass@1"]
        rows.append(
            {
                "stage": name,
                "model": model,
                "accuracy": pass1["value"],
                "CI": f"{pass1['low']:.3f}-{pass1['high']:.3f}",
                "n": result["n"],
                "tokens": round(result["generated_tokens"], 1),
                "thoughts": result["thoughts"],
                "format_errors": result["format_errors"],
            }
        )
    return rows


def run(ctx: StageContext, stage: LatentStage, resume: bool = False) -> dict:
    from reasonkit.latent.trainer import run_latent

    return run_latent(ctx, stage, resume=resume)


STAGE = StageType(LatentStage, validate, check_data, objective, summary_rows, run)
