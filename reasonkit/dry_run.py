"""``reasonkit run RECIPE --dry-run``: everything a run checks before loading weights, and what it would optimise.

For each stage: the data it reads (the first rows of each source, through the same loaders and format
contract as a real run; hub datasets are streamed, not downloaded), where the model would be read
from, the reward functions and the columns they need, and the resolved objective. Nothing is
trained, no model is loaded.
"""

from __future__ import annotations

import dataclasses
import json

from reasonkit.config import Recipe
from reasonkit.errors import ReasonkitError
from reasonkit.hub import where_is_model
from reasonkit.metrics import TrackerMissing, check_trackers
from reasonkit.stages import STAGES

SAMPLE_ROWS = 8


def dry_run(recipe: Recipe, rows: int = SAMPLE_ROWS) -> int:
    """Print each stage's checks and objective; 0 when every check passed, 1 otherwise."""
    data = _first_rows(recipe, rows)
    failures = 0
    try:
        check_trackers(recipe.report_to)
        print(f"ok: report_to {', '.join(recipe.report_to)}")
    except TrackerMissing as exc:
        failures += 1
        print(f"FAILED: {exc}")
    if recipe.model.path is not None:
        try:
            print(f"ok: model {recipe.model.path}: {where_is_model(recipe.model.path)}")
        except ReasonkitError as exc:
            failures += 1
            print(f"FAILED: {exc}")
    for name, stage in recipe.stages.items():
        print(f"\n=== stage {name} ({stage.type}) ===")
        entry = STAGES.get(stage.type)
        try:
            for line in entry.check_data(recipe, data, rows, stage):
                print(f"  ok: {line}")
        except Exception as exc:  # every problem is reported, then the next stage is checked
            failures += 1
            print(f"  FAILED: {exc}")
        print("  objective: " + json.dumps(entry.objective(stage), indent=2).replace("\n", "\n  "))
    print(
        f"\ndry run: {'all checks passed' if not failures else f'{failures} check(s) failed'}; nothing was trained"
    )
    return 1 if failures else 0


def _first_rows(recipe: Recipe, rows: int):
    """The recipe's data config with every dataset source cut to its first ``rows`` rows."""
    data = recipe.data
    cut = {
        split: dataclasses.replace(source, max_rows=min(rows, source.max_rows or rows))
        for split in ("train", "test", "rl")
        if (source := getattr(data, split)) is not None
    }
    return dataclasses.replace(data, **cut)
