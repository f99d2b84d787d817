"""The ``type: trm`` stage as the stage table sees it: its data check, objective, summary and run.

Light: the network, the data and the trainer (torch) are imported when they are used.
"""

from __future__ import annotations

import dataclasses

from reasonkit.metrics import format_table
from reasonkit.stage import StageContext, StageType, training_row
from reasonkit.trm.schema import TRMStage, objective, validate


def check_data(recipe, data, rows: int, stage: TRMStage) -> list[str]:
    """--dry-run: read a few puzzles (the first rows of a file, or a few generated) and run one
    supervision step of the network on them."""
    import torch

    from reasonkit.trm.data import PuzzleKind, puzzle_splits
    from reasonkit.trm.model import parameter_count
    from reasonkit.trm.trainer import build_model

    task = dataclasses.replace(
        stage.task,
        train_size=min(rows, stage.task.train_size),
        test_size=min(rows, stage.task.test_size),
        harder_size=min(rows, stage.task.harder_size),
        train_file=stage.task.train_file and dataclasses.replace(stage.task.train_file, max_rows=rows),
        test_file=stage.task.test_file and dataclasses.replace(stage.task.test_file, max_rows=rows),
    )
    kind, splits = PuzzleKind(task), puzzle_splits(task)
    model = build_model(stage, kind)
    x = splits["train"].inputs[:2]
    with torch.no_grad():
        out = model(x, *model.initial_state(len(x)))
    lines = [f"{name}: {len(s)} puzzles of {kind.seq_len} cells read" for name, s in splits.items()]
    lines.append(
        f"network: {parameter_count(model):,} parameters, {model.effective_depth()} layers per supervision step; "
        f"one step on 2 puzzles gives logits {tuple(out.logits.shape)}"
    )
    return lines


def summary_rows(name: str, summary: dict) -> list[dict]:
    interval = summary.get("exact_interval")
    return [
        training_row(
            name,
            summary,
            accuracy=summary.get("exact_accuracy"),
            CI=f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else None,
            n=summary.get("n"),
        )
    ]


def report(name: str, summary: dict) -> str:
    """Exact accuracy per test-time supervision step count, on the held-out puzzles and the harder ones."""
    rows = []
    for split, where in (("test", summary), ("harder", summary.get("harder") or {})):
        by_steps = where.get("exact_accuracy_by_test_steps")
        if by_steps:
            rows.append({"stage": name, "puzzles": split, **{f"{k} steps": v for k, v in by_steps.items()}})
    if not any(len(r) > 3 for r in rows):
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return "exact accuracy by supervision steps at test time:\n" + format_table(rows, columns)


def run(ctx: StageContext, stage: TRMStage, resume: bool = False) -> dict:
    from reasonkit.trm.trainer import run_trm

    return run_trm(ctx, stage, resume=resume)


STAGE = StageType(TRMStage, validate, check_data, objective, summary_rows, run, report, language_model=False)
