"""The processes a launch started, as accelerate should see them, on machines with or without GPUs."""

from __future__ import annotations

import atexit
import os
import sys


def process_state():
    """accelerate's process state (a singleton: every later Accelerator, TRL's included, shares it)."""
    from accelerate import PartialState

    return PartialState(**_cpu_launch_options())


def end_process(code: int) -> int:
    """End this process of a multi-process launch with ``code``, never through interpreter finalization.

    Each collective's work (holding the tensors it moved) is released by a gloo worker thread a moment
    after the collective returns. If the interpreter is finalizing by then, that thread cannot take the
    GIL to drop the tensors, is made to exit mid-destructor, and the process aborts with "terminate called
    without an active exception" (SIGABRT; seen at the end of runs on a loaded machine: a gdb backtrace
    shows ~AsyncBarrierWork -> decref_pyobject -> take_gil -> pthread_exit). Destroying the process groups
    would join those threads first, but DeepSpeed keeps groups and models in module globals
    (``deepspeed.utils.groups``, ZeRO's ``FWD_MODULE_STACK``), so some groups outlive any cleanup. So
    after the processes have met (success) and the group is destroyed, the exit handlers run (logging,
    trackers, child processes) and the process leaves with ``os._exit``. One process alone returns
    ``code`` as usual.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return code
    import torch

    if code == 0 and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no process leaves while another still needs it
        torch.distributed.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    import torch

    # `accelerate launch` or torchrun started several processes on a machine without GPUs: accelerate
    # picks no collective backend there and each process would train alone. Ask for gloo.
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return {}
    if uses_deepspeed():
        return {"backend": "gloo"}
    return {"cpu": True}
