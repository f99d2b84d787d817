"""A stage type defined outside the package, as a user's own would be: ``copy`` saves the model it starts
from unchanged, so a recipe can put it between two real stages and evaluate both."""

import shutil
from dataclasses import dataclass
from typing import Literal

from reasonkit.stage import StageType, training_row


@dataclass
class CopyStage:
    type: Literal["copy"] = "copy"
    init: str = "model"  # the model to copy: "model" or an earlier training stage
    note: str = ""


def run(ctx, stage: CopyStage, resume: bool = False) -> dict:
    if ctx.is_main_process:
        shutil.copytree(ctx.init_path, ctx.model_dir, dirs_exist_ok=True)
    return {"copied_from": ctx.init_path}


def check(recipe, data, rows: int, stage: CopyStage) -> list[str]:
    return [f"copies {stage.init}"]


def objective(stage: CopyStage) -> dict:
    return {"copies": stage.init, "note": stage.note}


def validate(name: str, stage: CopyStage, recipe, trained: list[str]) -> list[str]:
    return []  # the table checks `init` for every stage that trains


def summary_rows(name: str, summary: dict) -> list[dict]:
    return [training_row(name, summary)]


COPY = StageType(CopyStage, validate, check, objective, summary_rows, run)
