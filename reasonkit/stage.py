"""What every stage is handed by the pipeline, and what every training stage keeps the same way.

``StageContext``: the stage's recipe, name, folder and the model it starts from. ``StageRecord``: its
seed, its metrics log, the log cut back on resume, its curves and the summary's table row, held by
each trainer (composition, not a base class). ``save_stage_model``: the final model with its manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reasonkit.config import Recipe


@dataclass(frozen=True)
class StageType:
    """A stage type, as the stage table (``reasonkit.stages``) registers it: each a stage package's own."""

    schema: type  # its recipe section: a dataclass with a `type` field, and `init` when it trains
    # (name, stage, recipe, trained) -> the recipe's problems with it; ``trained``: earlier stages
    # that saved a model
    validate: Callable[..., list[str]]
    check_data: Callable[..., list[str]]  # (recipe, data, rows, stage) -> what --dry-run checked; raises
    objective: Callable[..., dict]  # (stage) -> what it optimises, or how it evaluates
    summary_rows: Callable[..., list[dict]]  # (name, summary) -> its rows of the run's summary table
    run: Callable[..., dict]  # (ctx, stage, resume) -> its summary; imports its trainer
    # (name, summary) -> what the run's summary prints below the table for it ("" for nothing)
    report: Callable[..., str] = lambda name, summary: ""
    # Saves a model in <stage>/model, which later stages can start from (`init`) or evaluate.
    trains: bool = True
    # Reads the recipe's `model` and `data` (a language model and its text); false for a stage that
    # builds its own network and data (trm), so a recipe of only such stages needs neither.
    language_model: bool = True


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
    def checkpoint_root(self) -> Path:
        """Where its checkpoints are published (reasonkit.checkpoints)."""
        return self.directory / "checkpoints"


class StageRecord:
    """A training stage's bookkeeping: seed, metrics log (main process only), resume, curves.

    >>> from types import SimpleNamespace
    >>> ctx = SimpleNamespace(recipe=SimpleNamespace(seed=3), is_main_process=False)
    >>> StageRecord(ctx, SimpleNamespace(seed=None), "sft").seed
    3
    """

    def __init__(self, ctx: StageContext, stage, kind: str):
        self.ctx, self.kind = ctx, kind
        self.seed = stage.seed if stage.seed is not None else ctx.recipe.seed  # null: the recipe's
        self.metrics_log = None

    def open_log(self) -> None:
        """metrics.jsonl, TensorBoard and the recipe's trackers, written by the main process."""
        from reasonkit.metrics import MetricsLog

        if self.ctx.is_main_process:
            self.metrics_log = MetricsLog(self.ctx.directory, self.ctx.recipe.report_to)

    def log(self, step: int, metrics: dict) -> None:
        if self.metrics_log:
            self.metrics_log.log(step, metrics)

    def resumed_at(self, step: int) -> None:
        """Forget what was logged after the checkpoint a resumed run continues from."""
        from reasonkit.metrics import truncate_jsonl

        if self.ctx.is_main_process:
            truncate_jsonl(self.ctx.directory / "metrics.jsonl", step)

    def close(self) -> list[dict] | None:
        """Close the log and draw curves.png; the logged records (None off the main process)."""
        from reasonkit.metrics import plot_curves, read_jsonl

        if not self.metrics_log:
            return None
        self.metrics_log.close()
        records = read_jsonl(self.ctx.directory / "metrics.jsonl")
        plot_curves(records, self.ctx.directory / "curves.png", title=f"{self.ctx.name} ({self.kind})")
        return records


def training_row(name: str, summary: dict, **columns) -> dict:
    """A training stage's row of the run's summary table; ``columns``: what the stage adds (accuracy, reward…)."""
    row = {"stage": name, "model": f"({summary['type']})", "train_loss": summary.get("train_loss")}
    return {**row, **columns, "steps": summary.get("steps"), "seconds": summary["wall_seconds"]}


def first_to_last(summary: dict, name: str) -> str | None:
    """``first_<name> -> last_<name>`` of a summary, as the table shows a metric that moved."""
    if f"first_{name}" not in summary:
        return None
    return f"{summary[f'first_{name}']:.3f} -> {summary[f'last_{name}']:.3f}"


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
        from reasonkit.models import load_model, merged_dir_of, whole_weights

        merged = merged_dir_of(ctx.model_dir)
        with whole_weights():  # main process only
            load_model(str(ctx.model_dir), ctx.recipe.model.dtype).save_pretrained(merged)
        tokenizer.save_pretrained(merged)
