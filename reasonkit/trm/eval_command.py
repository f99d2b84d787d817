"""``reasonkit eval TRM_MODEL_DIR``: a trained TRM on held-out puzzles, with the recursion made visible.

Reads the stage's saved ``config.json`` and weights, rebuilds the task's held-out puzzles (or reads
``--benchmark`` files in the Sudoku-Extreme shape), and writes to ``--output``: ``results.json``,
``<split>_steps.png`` (accuracy against test-time supervision steps) and ``dynamics.png`` (change per
recursion); it prints the tables.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from reasonkit.config import ConfigError, build_section
from reasonkit.manifest import read_manifest
from reasonkit.trm.schema import PuzzleFile, TRMStage, default_eval_steps, effective_supervision_steps


def is_trm_model(directory: str) -> bool:
    manifest = read_manifest(directory) if Path(directory).is_dir() else None
    return bool(manifest and manifest.get("stage") == "trm")


def load_trm(directory: str | Path):
    """(stage section, puzzle kind, model with the saved weights) of a trm stage's model/ folder."""
    from reasonkit.trm.data import PuzzleKind
    from reasonkit.trm.trainer import CONFIG_FILE, WEIGHTS_FILE, build_model

    directory = Path(directory)
    saved = directory / CONFIG_FILE
    stage = build_section(TRMStage, json.loads(saved.read_text()), str(saved), "the stage's saved settings")
    kind = PuzzleKind(stage.task)
    model = build_model(stage, kind)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
    return stage, kind, model


def run(args) -> int:
    from reasonkit.trm.data import puzzle_splits, read_puzzle_file, to_tensors
    from reasonkit.trm.evaluate import evaluate_model, report

    stage, kind, model = load_trm(args.model)
    if args.benchmark:
        if stage.task.name != "sudoku":
            raise ConfigError(
                "--benchmark files are Sudoku-Extreme shaped; a maze model evaluates its own task"
            )
        splits = {
            Path(path).stem: to_tensors(
                read_puzzle_file(PuzzleFile(path, split=args.split, max_rows=args.max_problems), kind.shape)
            )
            for path in args.benchmark
        }
    else:
        splits = {k: v for k, v in puzzle_splits(stage.task).items() if k != "train"}
        if args.max_problems:
            splits = {
                k: dataclasses.replace(
                    v, inputs=v.inputs[: args.max_problems], labels=v.labels[: args.max_problems]
                )
                for k, v in splits.items()
            }
    trained = effective_supervision_steps(stage)
    steps = sorted(set(args.steps)) if args.steps else default_eval_steps(stage)
    out = Path(args.output)
    results = evaluate_model(
        model,
        kind,
        splits,
        out,
        eval_steps=steps,
        trained_steps=trained,
        tolerance=args.tolerance if args.tolerance is not None else stage.fixed_point_tolerance,
        batch_size=args.batch_size,
        confidence=stage.confidence,
    )
    print("\n" + report(results, trained))
    print(f"\nresults, accuracy-vs-steps and dynamics plots: {out}/")
    return 0
