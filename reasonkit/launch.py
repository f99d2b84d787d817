"""The processes a launch started, as accelerate should see them, on machines with or without GPUs."""

from __future__ import annotations

import os

import torch


def process_state():
    """accelerate's process state (a singleton: every later Accelerator, TRL's included, shares it)."""
    from accelerate import PartialState

    return PartialState(**_cpu_launch_options())


def forget_mixed_precision() -> None:
    """Let the next Accelerator take its mixed precision from the stage that creates it. accelerate fixes
    it once per process (a later Accelerator asking for another one raises), while a process may run
    several stages or recipes, each with its own ``model.dtype``. The processes stay as they are."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


def uses_deepspeed() -> bool:
    """Whether `accelerate launch` was given a DeepSpeed config (known before any model is built)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def _cpu_launch_options() -> dict:
    # `accelerate launch` or torchrun started several processes on a machine without GPUs: accelerate
    # picks no collective backend there and each process would train alone. Ask for gloo.
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return {}
    if uses_deepspeed():
        return {"backend": "gloo"}
    return {"cpu": True}
