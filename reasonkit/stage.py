"""What every stage is handed by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reasonkit.config import Recipe


@dataclass
class StageContext:
    recipe: Recipe
    name: str  # the stage's key in the recipe
    directory: Path  # <output_dir>/<name>: everything this stage writes
    init_path: str  # the model it starts from: a hub id, a local directory, or an earlier stage's output
    is_main_process: bool = True

    @property
    def model_dir(self) -> Path:
        """Where the stage's final model (weights, tokenizer, manifest, recipe) is saved."""
        return self.directory / "model"


def save_stage_model(
    ctx: StageContext, tokenizer, *, model=None, objective: dict, traces: bool, think_prefilled: bool
) -> None:
    """The stage's final model with its tokenizer, objective manifest and the resolved recipe.

    ``model=None`` when the trainer has already written the weights (it gathers sharded ones).
    """
    import yaml

    from reasonkit.config import to_dict
    from reasonkit.manifest import write_manifest

    if model is not None:
        model.save_pretrained(ctx.model_dir)
    tokenizer.save_pretrained(ctx.model_dir)
    write_manifest(
        ctx.model_dir,
        stage=ctx.recipe.stages[ctx.name].type,
        objective=objective,
        traces=traces,
        think_prefilled=think_prefilled,
    )
    (ctx.model_dir / "recipe.yaml").write_text(yaml.safe_dump(to_dict(ctx.recipe), sort_keys=False))
