"""What every stage is handed by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reasonkit.config import Recipe


@dataclass
class StageContext:
    recipe: Recipe
    name: str  # the stage's key in the recipe
    directory: Path  # <output_dir>/<name>: everything this stage writes
    init_path: str  # the model it starts from: a hub id, a local directory, or an earlier stage's output
    is_main_process: bool = True
    # The models saved so far, by the name a recipe uses for them: "model" (the recipe's own) and each
    # earlier training stage's.
    models: dict[str, str] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        """Where the stage's final model (weights, tokenizer, manifest, recipe) is saved."""
        return self.directory / "model"

    @property
    def merged_dir(self) -> Path:
        return merged_dir_of(self.model_dir)


def merged_dir_of(model_dir: str | Path) -> Path:
    """Where a LoRA stage whose adapter is in ``model_dir`` writes its merged full weights (`lora.save_merged`)."""
    return Path(model_dir).parent / "merged"


def save_stage_model(
    ctx: StageContext,
    tokenizer,
    *,
    model=None,
    state_dict=None,
    objective: dict,
    traces: bool,
    think_prefilled: bool,
    save_merged: bool = False,
) -> None:
    """The stage's final model with its tokenizer, objective manifest and the resolved recipe.

    ``model=None`` when the trainer has already written the weights (it gathers sharded ones);
    ``state_dict``: the weights gathered from ZeRO-3 shards. A LoRA model saves its adapter;
    ``save_merged`` also writes the merged full weights to ``merged/``.
    """
    import yaml

    from reasonkit.config import to_dict
    from reasonkit.manifest import write_manifest

    if model is not None:
        model.save_pretrained(ctx.model_dir, state_dict=state_dict)
    tokenizer.save_pretrained(ctx.model_dir)
    write_manifest(
        ctx.model_dir,
        stage=ctx.recipe.stages[ctx.name].type,
        objective=objective,
        traces=traces,
        think_prefilled=think_prefilled,
    )
    (ctx.model_dir / "recipe.yaml").write_text(yaml.safe_dump(to_dict(ctx.recipe), sort_keys=False))
    if save_merged:
        from reasonkit.models import load_model, whole_weights

        with whole_weights():  # main process only
            load_model(str(ctx.model_dir), ctx.recipe.model.dtype).save_pretrained(ctx.merged_dir)
        tokenizer.save_pretrained(ctx.merged_dir)
