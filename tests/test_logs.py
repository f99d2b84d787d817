"""Where log records go (reasonkit/logs.py): reasonkit's own and every error on the console, the
libraries' other records in the run's log file; a tiny recipe run end to end shows only our lines."""

import importlib.util
import logging
import os

import pytest
import yaml

from reasonkit import logs
from tests.helpers.offline_cli import run_offline

# What `make demo` printed before: accelerate's checkpoint lines and warning, TRL's dataset bars,
# transformers' weight bars, DeepSpeed's accelerator line.
LIBRARY_LINES = [
    "Saving current state",
    "Removed shared tensor",
    "Dropping fully masked",
    "Loading weights",
    "Writing model shards",
    "Setting accelerator to CPU",
]


@pytest.fixture
def routed(monkeypatch):
    def setup(rank: int, log_file_follows: bool = True):
        monkeypatch.setenv("RANK", str(rank))
        logs.setup(log_file_follows)
        logs.quiet_libraries(deepspeed=False)  # as the command line does

    torch_log_level = os.environ.get("TORCH_CPP_LOG_LEVEL")  # setup sets it in other processes
    yield setup
    logs.close()
    if torch_log_level is None:
        os.environ.pop("TORCH_CPP_LOG_LEVEL", None)


def test_the_console_shows_ours_and_errors_and_the_run_log_the_rest(routed, tmp_path, capsys):
    routed(rank=0)
    logging.getLogger("accelerate.checkpointing").info("library info before the folder exists")
    logging.getLogger("reasonkit.sft").warning("our warning")
    logging.getLogger("transformers.modeling_utils").error("library error")
    logs.write_library_log(tmp_path / "run.log")
    logging.getLogger("accelerate.utils.other").warning("library warning")
    print("stage banner")
    logs.close()
    out, err = capsys.readouterr()
    assert "stage banner" in out
    assert "our warning" in err and "library error" in err
    assert "library info" not in err and "library warning" not in err
    written = (tmp_path / "run.log").read_text()
    for message in [
        "library info before the folder exists",
        "our warning",
        "library error",
        "library warning",
    ]:
        assert message in written
    assert "rank0 WARNING accelerate.utils.other: library warning" in written


def test_other_processes_print_nothing_but_errors(routed, tmp_path, capsys):
    routed(rank=1)
    print("stage banner")
    logging.getLogger("reasonkit.grpo").warning("our warning")
    logging.getLogger("reasonkit.grpo").error("our error")
    logs.write_library_log(tmp_path / "run.log")
    logging.getLogger("accelerate.checkpointing").info("library info")
    logs.close()
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "ERROR reasonkit.grpo: our error"
    assert "rank1 INFO accelerate.checkpointing: library info" in (tmp_path / "run.log").read_text()


@pytest.mark.parametrize("show_held", [True, False])
def test_library_warnings_held_for_a_log_file_that_never_opened_reach_the_console(routed, capsys, show_held):
    routed(rank=0)
    logging.getLogger("accelerate.utils.other").warning("held warning")
    logging.getLogger("accelerate.checkpointing").info("held info")
    assert "held" not in capsys.readouterr().err
    logs.close(show_held)  # False: the command failed with a message of ours, which says it all
    err = capsys.readouterr().err
    assert ("held warning" in err) == show_held and "held info" not in err


def test_without_a_log_file_library_warnings_reach_the_console(routed, capsys):
    routed(rank=0, log_file_follows=False)  # --dry-run, validate: no run folder
    logging.getLogger("datasets.load").warning("library warning")
    logging.getLogger("accelerate.checkpointing").info("library info")
    err = capsys.readouterr().err
    assert "library warning" in err and "library info" not in err


def test_a_tiny_run_shows_only_our_lines_and_makes_no_network_call(tmp_path, tiny_model_dir):
    """SFT with checkpoints, GRPO with a checkpoint, evaluation: the console carries reasonkit's banners,
    bars and summary and none of the libraries' lines, which are in run.log; and a recipe whose model
    and data are local runs without a single network call."""
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(tiny_model_dir)},
        "data": {"task": "arithmetic", "arithmetic": {"digits": 1, "test_size": 4, "rl_size": 8}},
        "stages": {
            "sft": {"type": "sft", "batch_size": 4, "max_steps": 2, "save_steps": 1, "max_length": 64},
            "grpo": {
                "type": "grpo",
                "init": "sft",
                "rewards": [{"name": "exact_answer"}],
                "prompts_per_step": 2,
                "num_generations": 2,
                "max_steps": 2,  # a checkpoint after step 1
                "max_new_tokens": 8,
                "save_steps": 1,
                "engine": "transformers",
            },
            "eval": {
                "type": "eval",
                "models": ["sft", "grpo"],
                "max_new_tokens": 8,
                "engine": "transformers",
            },
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    [run] = run_offline([["run", str(path)]], tmp_path / "hf_home")
    assert run["rc"] == 0, run["stderr"]
    assert run["network"] == []
    console = run["stdout"] + run["stderr"]
    for banner in ["=== stage sft (sft) ===", "grpo grpo", "eval sft.test", "total wall time"]:
        assert banner in console
    assert not [line for line in LIBRARY_LINES if line in console], console
    written = (tmp_path / "run" / "run.log").read_text()
    expected = ["Saving current state", "Removed shared tensor"]
    if importlib.util.find_spec("deepspeed") is not None:
        expected.append("Setting accelerator to CPU")
    for line in expected:
        assert line in written
