"""The stage table: every stage type a recipe can name, with its schema, runner, dry-run check and objective.

A stage type is one module plus one entry here (``register_stage``). Reading a recipe (its schema and
validation), the pipeline, ``--dry-run``, the objective manifest and trackers consult this table and
nothing else. Runners, dry-run checks and objectives are named ``module:function`` and imported when
first used, so reading a recipe does not import the trainers.

    runner(ctx: StageContext, stage, resume: bool) -> dict  # the stage's summary
    dry_run(recipe, data, rows: int, stage) -> list[str]    # what it checked; raises on a problem
    objective(stage) -> dict                                # what it optimises, or how it evaluates
    validate(name, stage, recipe, trained) -> list[str]     # recipe problems (``trained``: earlier
                                                            # stages that saved a model)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reasonkit.config import EvalStage, GRPOStage, SFTStage, check_eval, check_grpo, check_sft
from reasonkit.trm.config import TRMStage, check_trm


@dataclass(frozen=True)
class StageType:
    schema: type  # its recipe section: a dataclass with a `type` field, and `init` when it trains
    runner: str  # "module:function"
    dry_run: str  # "module:function"
    objective: str  # "module:function"
    validate: Callable[..., list[str]] | None = None
    # Saves a model in <stage>/model, which later stages can start from (`init`) or evaluate.
    trains: bool = True
    # Reads the recipe's `model` and `data` (a language model and its text); false for a stage that
    # builds its own network and data (trm), so a recipe of only such stages needs neither.
    language_model: bool = True

    def run(self, ctx, stage, resume: bool = False) -> dict:
        return _load(self.runner)(ctx, stage, resume=resume)

    def check(self, recipe, data, rows: int, stage) -> list[str]:
        return _load(self.dry_run)(recipe, data, rows, stage)

    def describe(self, stage) -> dict:
        return _load(self.objective)(stage)


STAGES: dict[str, StageType] = {}


def register_stage(name: str, stage_type: StageType) -> None:
    """Make ``type: name`` usable in recipes."""
    STAGES[name] = stage_type


def stage_type(name: str) -> StageType:
    return STAGES[name]


def _load(spec: str) -> Callable[..., Any]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


register_stage(
    "sft",
    StageType(
        SFTStage,
        runner="reasonkit.sft:run_sft",
        dry_run="reasonkit.dry_run:check_sft_data",
        objective="reasonkit.sft:sft_objective",
        validate=check_sft,
    ),
)
register_stage(
    "grpo",
    StageType(
        GRPOStage,
        runner="reasonkit.grpo.trainer:run_grpo",
        dry_run="reasonkit.dry_run:check_grpo_data",
        objective="reasonkit.grpo.objective:stage_objective",
        validate=check_grpo,
    ),
)
register_stage(
    "eval",
    StageType(
        EvalStage,
        runner="reasonkit.evaluate:run_eval_stage",
        dry_run="reasonkit.dry_run:check_eval_data",
        objective="reasonkit.evaluate:eval_settings",
        validate=check_eval,
        trains=False,
    ),
)
register_stage(
    "trm",
    StageType(
        TRMStage,
        runner="reasonkit.trm.stage:run_trm",
        dry_run="reasonkit.trm.stage:check_trm_data",
        objective="reasonkit.trm.stage:trm_objective",
        validate=check_trm,
        language_model=False,
    ),
)
