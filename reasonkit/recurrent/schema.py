"""Recurrent depth in a recipe: the layout ``model.tiny.recurrent`` builds, and what a recipe with a
recurrent-depth model cannot do (checked at ``validate``). Light: no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MODEL_TYPE = "reasonkit_recurrent"  # the model type in a saved config.json (reasonkit.recurrent.model)
# Engines with no implementation of the architecture (vLLM runs only the model classes it ships).
NO_RECURRENCE_ENGINES = ("vllm", "vllm_server")
# Stage types that cannot run one: GRPO and the latent stage generate or chain through a KV cache.
NO_RECURRENCE_STAGES = ("grpo", "latent")


@dataclass
class RecurrentLayout:
    """Recurrent depth (Huginn; Geiping et al. 2025): a prelude, ONE shared core block applied r times with
    the prelude's output injected at every iteration, then a coda and the LM head. With it, the tiny model's
    `num_layers` is unused. docs/latent-reasoning.md says how r is drawn in training and chosen at test time."""

    prelude_layers: int = 1
    core_layers: int = 2  # the shared block's decoder layers
    coda_layers: int = 1
    # Training: r = 1 + Poisson(λ) per forward, λ log-normal with this mean; test time: r by default.
    mean_recurrence: int = 4
    backprop_depth: int = 2  # training: the gradient flows through the last this-many iterations only


def is_recurrent(path: str | Path) -> bool:
    """Whether a local model directory holds a recurrent-depth model (its config's model type)."""
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == MODEL_TYPE


def check_recurrent_recipe(recipe) -> list[str]:
    """Problems of a recipe's recurrent layout, and of stages that cannot run a recurrent-depth model (every
    model of a recipe descends from its `model`), or that ask for a test-time depth of a model without one."""
    tiny = recipe.model.tiny
    layout = tiny.recurrent if tiny is not None else None
    errors = _check_layout(layout) if layout else []
    recurrent = layout is not None or (recipe.model.path is not None and is_recurrent(recipe.model.path))
    for name, stage in recipe.stages.items():
        where = f"stages.{name}"
        if not recurrent:
            if getattr(stage, "recurrences", None) or getattr(stage, "exit_kl", None) is not None:
                errors.append(
                    f"{where}: recurrences/exit_kl set the test-time depth of a recurrent-depth model, and the "
                    "recipe's model has none (give model.tiny.recurrent, or remove them)"
                )
        elif stage.type in NO_RECURRENCE_STAGES:
            errors.append(
                f"{where}: a {stage.type} stage cannot run a recurrent-depth model yet (it generates or chains "
                "through a KV cache, which the model has not); use sft and eval stages"
            )
        elif stage.type == "eval" and getattr(stage, "engine", None) in NO_RECURRENCE_ENGINES:
            errors.append(
                f"{where}.engine: {stage.engine} cannot run a recurrent-depth model: vLLM has no implementation "
                "of its architecture (a shared core block iterated r times). Use engine: transformers (or auto, "
                "which runs it on transformers)"
            )
    return errors


def _check_layout(layout: RecurrentLayout) -> list[str]:
    where = "model.tiny.recurrent"
    return [
        f"{where}.{key}: at least {least}, got {getattr(layout, key)}"
        for key, least in [
            ("prelude_layers", 0),
            ("core_layers", 1),
            ("coda_layers", 0),
            ("mean_recurrence", 1),
            ("backprop_depth", 1),
        ]
        if getattr(layout, key) < least
    ]
