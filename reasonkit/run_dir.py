"""The run folder (a recipe's ``output_dir``): one run in it, continued only with the recipe it began
with, seen whole by every process.

- A new run refuses a folder that holds another one (``--resume`` continues it, ``--overwrite`` replaces
  it), and says what is there: which stages finished, and where an unfinished one stopped.
- ``--resume`` refuses a recipe that differs from the one the run began with (``<output_dir>/recipe.yaml``)
  in anything already trained: the resumed run would not be the run that was stopped. Stages that have not
  begun may change, and so may what does not change what is trained (``RESUME_MAY_CHANGE``).
- On several machines, every process must see the same folder: stages read the models earlier stages
  saved, and a checkpoint's parts from every process must sit together. A run whose machines do not share
  it is refused at start (``check_shared``).
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from pathlib import Path

import yaml

from reasonkit.checkpoints import checkpoint_step, latest_checkpoint
from reasonkit.config import Recipe, to_dict
from reasonkit.errors import ReasonkitError

RECIPE_FILE = "recipe.yaml"
DONE_FILE = "done.json"  # in a stage's folder once it has finished
# Settings a resumed run may change, since none changes what is trained: which metrics are logged, where
# and how often, how often checkpoints are made, where the vLLM servers are (each request carries its
# seed) and how long to wait for them, and memory: micro-batch size (float rounding aside:
# tests/distributed) and KV cache.
RESUME_MAY_CHANGE = (
    "report_to",
    "logging_steps",
    "metrics_by",
    "save_steps",
    "vllm_server",
    "token_budget",
    "reward_workers",
    "gpu_memory_utilization",
    "kv_cache_gb",
)


class RunDirectoryError(ReasonkitError, RuntimeError):
    pass


def prepare_output_dir(out: Path, recipe: Recipe, resume: bool, overwrite: bool, state) -> None:
    """Never mix two runs in one directory: continue it (resume), replace it (overwrite), or refuse.

    Every process checks (so each raises the same error rather than some waiting for the others); the
    main process then clears what ``overwrite`` replaces. ``state``: accelerate's process state.
    """
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    check_shared(out, state)
    ours = [out / name for name in [*recipe.stages, "base_model", "summary.json", RECIPE_FILE, "run.log"]]
    existing = [p for p in ours if p.exists()]
    if existing and not resume and not overwrite:
        raise RunDirectoryError(
            f"{out} already holds a run ({describe_run(out, recipe)}). Continue it with --resume, "
            f"replace it with --overwrite, or pick another directory (output_dir=...)."
        )
    if resume and (out / RECIPE_FILE).exists():
        check_same_recipe(out, recipe)
    state.wait_for_everyone()  # every process has looked before anything changes
    if state.is_main_process and not resume:
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def describe_run(out: Path, recipe: Recipe) -> str:
    """What a run folder holds, stage by stage: 'distill done; grpo stopped at step 40'."""
    parts = []
    for name in recipe.stages:
        directory = out / name
        if (directory / DONE_FILE).exists():
            parts.append(f"{name} done")
        elif directory.exists():
            latest = latest_checkpoint(directory / "checkpoints")
            where = (
                f"at step {checkpoint_step(latest)} (its last checkpoint)"
                if latest
                else "before its first checkpoint"
            )
            parts.append(f"{name} stopped {where}")
    return "; ".join(parts) or "files of an earlier run"


def check_same_recipe(out: Path, recipe: Recipe) -> None:
    """Refuse to resume with a recipe that differs from the run's own in anything already trained."""
    saved = yaml.safe_load((out / RECIPE_FILE).read_text())
    now = yaml.safe_load(yaml.safe_dump(to_dict(recipe), sort_keys=False))  # as the saved one was written
    begun = [name for name in saved.get("stages", {}) if (out / name).exists()]
    if not begun:
        return
    changes = [
        f"{key}: {_show(before)} there, {_show(after)} here"
        for key, before, after in recipe_differences(saved, now)
        if _matters(key, begun)
    ]
    if changes:
        raise RunDirectoryError(
            f"{out} was started with another recipe ({out / RECIPE_FILE}): " + "; ".join(changes) + ". "
            "A resumed run must go on with what it began with: resume with "
            f"`reasonkit run {out / RECIPE_FILE} --resume`, or start over with --overwrite (or another output_dir)."
        )


def recipe_differences(before: dict, after: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every leaf that differs; a missing side is None.

    >>> recipe_differences({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}})
    [('b.c', 2, 5), ('b.d', 3, None)]
    """
    found = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += recipe_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append((f"{prefix}{key}", old, new))
    return found


def _matters(key: str, begun: list[str]) -> bool:
    """Whether a changed setting touches what the begun stages trained."""
    parts = key.split(".")
    if any(part in RESUME_MAY_CHANGE for part in parts):
        return False
    if parts[0] == "stages":
        return parts[1] in begun
    return True  # model, data, seed, output_dir: every stage's


def _show(value) -> str:
    return (
        "(absent)" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    )


def check_shared(out: Path, state) -> None:
    """Refuse, on every process at once, a run whose processes do not all see the same ``out``.

    The main process leaves a token there; a process on a machine whose disk is not the main one's
    cannot read it back. Every process then knows which machines are missing and stops with that reason.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    if state.num_processes < 2:
        return
    token = [uuid.uuid4().hex if state.is_main_process else None]
    broadcast_object_list(token)
    marker = out / ".launch"
    if state.is_main_process:
        marker.write_text(token[0])
    state.wait_for_everyone()
    sees = marker.exists() and marker.read_text() == token[0]
    seen = gather_object([(socket.gethostname(), state.process_index, sees)])
    state.wait_for_everyone()
    if state.is_main_process:
        marker.unlink()
    blind = [f"process {index} on {host}" for host, index, ok in seen if not ok]
    if blind:
        raise RunDirectoryError(
            f"output_dir {out} is not the same folder for every process: {', '.join(blind)} cannot see what "
            "process 0 wrote there. Every machine of a launch must see one output folder (a shared disk: NFS, "
            "Lustre, a cloud file store), since a stage loads the model the one before saved and a checkpoint "
            "gathers the parts every process writes. Put output_dir on a disk all machines mount at the same path."
        )
