"""Checkpoints that exist whole or not at all, written by any number of processes.

A stage writes checkpoint N into ``<root>/partial/step-N`` (SFT: TRL's trainer writes
``partial/checkpoint-N``), each process its own part. Once every
process is done, the main process writes the manifest (the last file) and renames the folder to
``<root>/step-N``: one rename, atomic on one filesystem. So a ``step-*`` folder holding a manifest is
always a whole checkpoint. A run killed while saving leaves its half-written folder under ``partial/``,
which ``--resume`` never reads (``checkpoint_to_resume`` clears it) and continues from the checkpoint before.

This needs every process to see one output folder: on several machines, a disk they share
(``run_dir.check_shared`` checks that at start). What is not covered: a machine losing power right after a save
(the files are not fsynced; a killed process loses nothing, since the kernel still writes its pages).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reasonkit.errors import ReasonkitError
from reasonkit.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)

PARTIAL = "partial"  # under a stage's checkpoint root: checkpoints still being written


class CheckpointError(ReasonkitError, RuntimeError):
    """A checkpoint that cannot be resumed from; the message says which and what to do."""


def checkpoint_dir(root: Path, step: int) -> Path:
    """Where the whole checkpoint of ``step`` lives (names sort by step)."""
    return root / f"step-{step:06d}"


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint folder was written at.

    >>> checkpoint_step(Path("runs/x/grpo/checkpoints/step-000040"))
    40
    """
    return int(checkpoint.name.removeprefix("step-"))


def latest_checkpoint(root: Path, before: Path | None = None) -> Path | None:
    """The newest whole checkpoint under ``root`` (older than ``before``, if given): a ``step-*`` folder
    holding its manifest, or None.

    A ``step-*`` folder without a manifest was not written by this code (or was edited by hand): it is
    skipped with a warning, never resumed from.
    """
    found = sorted(root.glob("step-*")) if root.exists() else []
    if before is not None:
        found = [p for p in found if p.name < before.name]
    for candidate in reversed(found):
        if (candidate / MANIFEST_FILE).exists():
            return candidate
        log.warning("%s has no %s: not a whole checkpoint, skipped", candidate, MANIFEST_FILE)
    return None


def checkpoint_to_resume(root: Path, state) -> Path | None:
    """The checkpoint a resumed stage continues from (None: the stage starts over), after the main process
    has removed what a killed run left half-written under ``partial/``. Every process calls it."""
    partial = root / PARTIAL
    if state.is_main_process and partial.exists():
        log.info("removing %s: checkpoints a stopped run did not finish writing", partial)
        shutil.rmtree(partial)
    state.wait_for_everyone()
    latest = latest_checkpoint(root)
    if latest is None:
        log.info("no checkpoint in %s: the stage starts from the beginning", root)
        return None
    changed = changed_files(latest)
    if changed:
        previous = latest_checkpoint(root, before=latest)
        instead = f"resume from {previous.name}" if previous else "start the stage over"
        raise CheckpointError(
            f"{latest} is not as it was written: {'; '.join(changed)}. Delete it to {instead} with "
            "--resume, or start the run over with --overwrite."
        )
    return latest


def check_same_world(checkpoint: Path, written_by: int, world: int) -> None:
    """Refuse a checkpoint written by ``written_by`` processes in a run of ``world``: a run of another size
    would not continue it exactly (each process's share of a batch, what each process saved of its own)."""
    if written_by != world:
        raise CheckpointError(
            f"{checkpoint} was written by {written_by} processes; resume it with as many (now {world})"
        )


def changed_files(checkpoint: Path) -> list[str]:
    """What differs from the list of files (and their sizes) the manifest recorded when it was written."""
    written = json.loads((checkpoint / MANIFEST_FILE).read_text()).get("files", {})
    found = _contents(checkpoint)
    changes = [f"{name} is missing" for name in written if name not in found]
    changes += [
        f"{name} has {found[name]:,} bytes, not {size:,}"
        for name, size in written.items()
        if name in found and found[name] != size
    ]
    return changes


def _contents(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` (the manifest aside) by relative path, with its size."""
    return {
        str(path.relative_to(directory)): path.stat().st_size
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


@contextmanager
def saving_checkpoint(root: Path, step: int, state, write_manifest: Callable[[Path], None]) -> Iterator[Path]:
    """Yield the folder every process writes its part of ``step``'s checkpoint into; then publish it.

    ``state`` is accelerate's process state (``is_main_process``, ``wait_for_everyone``);
    ``write_manifest(folder)`` writes the manifest into the finished folder (main process).
    """
    partial = root / PARTIAL / checkpoint_dir(root, step).name
    if state.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed at this step
        partial.mkdir(parents=True)
    state.wait_for_everyone()
    yield partial
    publish_checkpoint(partial, checkpoint_dir(root, step), state, write_manifest)


def publish_checkpoint(partial: Path, final: Path, state, write_manifest: Callable[[Path], None]) -> None:
    """Make the checkpoint written into ``partial`` visible as ``final``, manifest last (every process
    calls it; the main process renames)."""
    state.wait_for_everyone()  # every process's part is on disk
    if state.is_main_process:
        write_manifest(partial)
        # The manifest also lists what was written, so a resume notices a file removed or cut short.
        manifest = json.loads((partial / MANIFEST_FILE).read_text())
        manifest["files"] = _contents(partial)
        (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        if final.exists():  # a step written again after a resume from an earlier one
            shutil.rmtree(final)
        partial.rename(final)
        with contextlib.suppress(OSError):  # nothing else half-written: no partial/ left behind
            partial.parent.rmdir()
    state.wait_for_everyone()


@contextmanager
def resuming_from(checkpoint: Path) -> Iterator[None]:
    """Turn a failure to load ``checkpoint`` (a file removed, replaced or truncated by hand) into a message
    that names it and what to do, instead of a traceback from inside torch, accelerate or DeepSpeed."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        previous = latest_checkpoint(checkpoint.parent, before=checkpoint)
        instead = f"resume from {previous.name}" if previous else "start the stage over"
        raise CheckpointError(
            f"could not resume from {checkpoint}: {type(exc).__name__}: {exc}. The checkpoint was changed "
            f"after it was written (a file removed, replaced or cut short?). Delete {checkpoint} to {instead} "
            "with --resume, or start the run over with --overwrite."
        ) from exc
