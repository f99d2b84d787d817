"""A finished run copied as if it had been killed part-way, for the tests of resuming."""

import shutil
from pathlib import Path


def killed_after_first_checkpoint(out: Path, copy: Path, stage: str, later_stages: list[str]) -> None:
    """Copy the run ``out`` to ``copy`` as if killed after ``stage``'s first checkpoint: its later checkpoints,
    model and done.json gone, and the done.json of ``later_stages``."""
    shutil.copytree(out, copy)
    saved = copy / "recipe.yaml"
    saved.write_text(saved.read_text().replace(str(out), str(copy)))
    folder = copy / stage
    for later in sorted((folder / "checkpoints").glob("step-*"))[1:]:
        shutil.rmtree(later)
    shutil.rmtree(folder / "model")
    (folder / "done.json").unlink()
    for name in later_stages:
        (copy / name / "done.json").unlink()
