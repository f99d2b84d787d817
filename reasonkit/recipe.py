"""Reading a recipe: its YAML, the command line's overrides, every section built through its schema
(the stage sections through the stage table) and checked, with one error listing every problem."""

from __future__ import annotations

from pathlib import Path

import yaml

from reasonkit.config import ConfigError, Recipe, apply_override, build_section
from reasonkit.recurrent.schema import check_recurrent_recipe
from reasonkit.stages import STAGES


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read, override and check a recipe; raises ConfigError listing every problem found."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of keys, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return build_recipe(raw, source=str(path))


def build_recipe(raw: dict, source: str = "<recipe>") -> Recipe:
    schemas = {name: entry.schema for name, entry in STAGES.items()}
    return build_section(Recipe, raw, source, "the recipe", check_recipe, stage_schemas=schemas)


def check_recipe(recipe: Recipe) -> list[str]:
    """What the schema alone cannot say: sections that need each other, and each stage's own checks."""
    errors = []
    model, data = recipe.model, recipe.data
    uses_lm = any(STAGES.get(s.type).language_model for s in recipe.stages.values()) or not recipe.stages
    if uses_lm and (model.path is None) == (model.tiny is None):
        errors.append("model: give exactly one of 'path' (hub id or local directory) and 'tiny'")
    if uses_lm and (data.task is None) == (data.train is None):
        errors.append("data: give exactly one of 'task' (built-in) and 'train' (a dataset)")
    for key in ("quick_share", "shortcut_rate"):
        if not 0 <= getattr(data.arithmetic, key) <= 1:
            errors.append(
                f"data.arithmetic.{key}: {getattr(data.arithmetic, key)} is a share, between 0 and 1"
            )
    if not recipe.stages:
        errors.append("stages: a recipe needs at least one stage")
    errors += check_recurrent_recipe(recipe)
    trained: list[str] = []  # earlier stages that produce a model
    for name, stage in recipe.stages.items():
        entry = STAGES.get(stage.type)
        if entry.trains and stage.init != "model" and stage.init not in trained:
            errors.append(
                f"stages.{name}.init: {stage.init!r} is not 'model' nor an earlier training stage ({trained})"
            )
        errors += entry.validate(name, stage, recipe, trained)
        if entry.trains:
            trained.append(name)
    return errors
