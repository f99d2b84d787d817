"""``reasonkit run RECIPE [key.path=value ...]``: a recipe's stages in order; ``--dry-run`` checks them instead.

A dry run does everything a run checks before loading weights, and says what it would optimise. For
each stage: the data it reads (the first rows of each source, through the same loaders and format
contract as a real run; hub datasets are streamed, not downloaded), where the model would be read
from, the reward functions and the columns they need, and the resolved objective. Nothing is
trained, no model is loaded. Each stage's own checks are its stage type's (reasonkit/stages.py).
"""

from __future__ import annotations

import dataclasses
import json
import os

from reasonkit.config import Recipe
from reasonkit.errors import ReasonkitError
from reasonkit.recipe import load_recipe

SAMPLE_ROWS = 8


def add_command(commands) -> None:
    summary = "run a recipe's stages in order"
    cmd = commands.add_parser("run", help=summary, description=summary)
    cmd.set_defaults(handler=run, uses_libraries=True)
    add_recipe_arguments(cmd)
    cmd.add_argument(
        "--resume",
        action="store_true",
        help="skip finished stages and continue the unfinished one from its latest checkpoint",
    )
    cmd.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in the output directory"
    )
    cmd.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config, the data on its first rows and the rewards, print the objective; train nothing",
    )


def add_recipe_arguments(cmd) -> None:
    """The recipe and its overrides (``run`` and ``validate``)."""
    cmd.add_argument("recipe", help="path to the recipe YAML")
    cmd.add_argument(
        "overrides", nargs="*", help="key.path=value overrides, e.g. stages.sft.learning_rate=1e-5"
    )


def run(args) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        return dry_run(recipe)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from reasonkit.pipeline import run_recipe

    run_recipe(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0


def dry_run(recipe: Recipe, rows: int = SAMPLE_ROWS) -> int:
    """Print each stage's checks and objective; 0 when every check passed, 1 otherwise."""
    from reasonkit.hub import where_is_model
    from reasonkit.metrics import TrackerMissing, check_trackers
    from reasonkit.stages import STAGES

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
