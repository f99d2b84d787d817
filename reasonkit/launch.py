"""The processes a launch started, as accelerate should see them, on machines with or without GPUs."""

from __future__ import annotations

import os

import torch


def process_state():
    """accelerate's process state (a singleton: every later Accelerator, TRL's included, shares it)."""
    from accelerate import PartialState

    return PartialState(**_cpu_launch_options())


def _cpu_launch_options() -> dict:
    # `accelerate launch` or torchrun started several processes on a machine without GPUs: accelerate
    # picks no collective backend there and each process would train alone. Ask for gloo.
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return {}
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return {"backend": "gloo"}
    return {"cpu": True}
