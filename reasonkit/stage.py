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
