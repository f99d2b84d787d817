"""Bad input on the paths of a stopped run: a run folder holding a stopped run, a resume with a changed
recipe, a checkpoint edited by hand. Each ends in a message that says what to do, never a traceback from
inside a library."""

import json
import shutil

import pytest

from reasonkit import checkpoints
from reasonkit.cli import main
from tests.trm.test_stage import recipe_file, trm_stage


@pytest.fixture
def stopped(tmp_path):
    """A TRM run as a kill after its step-2 checkpoint leaves it (max_steps 4, save_steps 2)."""
    path = recipe_file(tmp_path, {"trm": trm_stage(max_steps=4, save_steps=2, eval_steps=[1])})
    assert main(["run", str(path)]) == 0
    stage = tmp_path / "run" / "trm"
    for name in ("model", "eval", "done.json"):
        shutil.rmtree(stage / name) if (stage / name).is_dir() else (stage / name).unlink()
    return path, stage / "checkpoints" / "step-000002"


def error_of(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_a_new_run_in_a_stopped_runs_folder_says_where_it_stopped(stopped, capsys):
    path, _ = stopped
    message = error_of(capsys, "run", str(path))
    assert "trm stopped at step 2 (its last checkpoint)" in message and "--resume" in message


def test_resume_with_a_changed_recipe_names_the_change_and_the_recipe_to_resume_with(stopped, capsys):
    path, _ = stopped
    message = error_of(capsys, "run", str(path), "stages.trm.learning_rate=0.01", "--resume")
    assert "stages.trm.learning_rate: 0.003 there, 0.01 here" in message
    assert f"reasonkit run {path.parent / 'run' / 'recipe.yaml'} --resume" in message
    # What does not touch the weights may change: the run goes on.
    assert main(["run", str(path), "stages.trm.logging_steps=2", "--resume"]) == 0


@pytest.mark.parametrize("edit", ["removed", "cut short"])
def test_a_checkpoint_edited_by_hand_is_refused_naming_the_file(stopped, capsys, edit):
    path, checkpoint = stopped
    state = checkpoint / "state.pt"
    if edit == "removed":
        state.unlink()
    else:
        state.write_bytes(state.read_bytes()[:100])
    message = error_of(capsys, "run", str(path), "--resume")
    assert str(checkpoint) in message and "state.pt" in message
    assert "Delete it to start the stage over" in message


def test_a_checkpoint_without_its_manifest_is_never_resumed_from(stopped, capsys):
    path, checkpoint = stopped
    (checkpoint / checkpoints.MANIFEST_FILE).unlink()
    assert checkpoints.latest_checkpoint(checkpoint.parent) is None
    assert main(["run", str(path), "--resume"]) == 0  # starts the stage over
    assert "resuming from" not in capsys.readouterr().out


def test_a_checkpoint_written_by_another_number_of_processes_says_how_many(stopped, capsys):
    import torch

    path, checkpoint = stopped
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    state["world"] = 2
    torch.save(state, checkpoint / "state.pt")
    manifest = json.loads((checkpoint / checkpoints.MANIFEST_FILE).read_text())
    manifest["files"]["state.pt"] = (checkpoint / "state.pt").stat().st_size
    (checkpoint / checkpoints.MANIFEST_FILE).write_text(json.dumps(manifest))
    message = error_of(capsys, "run", str(path), "--resume")
    assert "written by 2 processes; resume it with as many (now 1)" in message
