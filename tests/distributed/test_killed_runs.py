"""A run killed (SIGKILL) while it writes a checkpoint loses nothing, in every stage that saves, on 1 and
2 processes: the half-written checkpoint never becomes visible, `--resume` continues from the one before,
and the run ends with the weights of a run that never stopped.

One recipe holds an SFT, a GRPO and a TRM stage. The killed copy is killed three times, each time while
process 0 is about to publish a stage's step-4 checkpoint (tests/helpers/run_recipe.py holds it
there), and resumed after each kill.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reasonkit.checkpoints import PARTIAL, latest_checkpoint
from tests.conftest import TINY_SIZES
from tests.distributed.test_multiprocess import CONFIGS, HELPERS, free_port

STEPS, SAVE_STEPS = 6, 2
KILLED_AT = 4  # each stage's step-4 checkpoint is being written when the run is killed


def recipe(directory: Path) -> Path:
    raw = {
        "output_dir": str(directory / "run"),
        "seed": 3,
        "report_to": ["jsonl"],
        "model": {"tiny": TINY_SIZES},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
        "stages": {
            "sft": {
                "type": "sft",
                "learning_rate": 3e-3,
                "lr_scheduler": "cosine",
                "warmup_steps": 2,
                "batch_size": 4,
                "max_steps": STEPS,
                "save_steps": SAVE_STEPS,
                "max_length": 128,
            },
            "grpo": {
                "type": "grpo",
                "init": "sft",
                "rewards": [{"name": "exact_answer"}],
                "prompts_per_step": 4,
                "num_generations": 4,
                "max_new_tokens": 12,
                "learning_rate": 1e-3,
                "lr_scheduler": "cosine",
                "warmup_steps": 2,
                "beta": 0.04,
                "max_steps": STEPS,
                "save_steps": SAVE_STEPS,
                "engine": "transformers",
                "reward_workers": 0,
            },
            "trm": {
                "type": "trm",
                "task": {
                    "name": "sudoku",
                    "sudoku": {"size": 6, "min_clues": 12},
                    "train_size": 40,
                    "test_size": 8,
                },
                "network": {"hidden_size": 32, "latent_steps": 2, "recursions": 2},
                "supervision_steps": 2,
                "batch_size": 8,
                "max_steps": STEPS,
                "save_steps": SAVE_STEPS,
                "learning_rate": 3e-3,
                "eval_steps": [1, 2],
            },
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def command(processes: int, *args, config: str = "ddp") -> list[str]:
    script = [str(HELPERS / "run_recipe.py"), *map(str, args)]
    if processes == 1:
        return [sys.executable, *script]
    launch = ["-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml")]
    launch += [
        "--num_processes",
        str(processes),
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    return [sys.executable, *launch, *script]


def run(processes: int, *args, config: str = "ddp") -> str:
    done = subprocess.run(
        command(processes, *args, config=config), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        pytest.fail(f"run {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done.stdout


def kill_while_saving(processes: int, stage: str, marker: Path, *args, config: str = "ddp") -> str:
    """Start the run, wait until STAGE's step-4 checkpoint is about to be published, kill every process;
    what the run printed."""
    printed = marker.with_suffix(".out")
    launched = subprocess.Popen(
        command(processes, "--stall-at-checkpoint", stage, KILLED_AT, marker, *args, config=config),
        stdout=printed.open("w"),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600  # a guard against a run that never gets there, not a measurement
    while not marker.exists():
        if launched.poll() is not None:
            pytest.fail(f"the run ended before {stage}'s step {KILLED_AT}:\n{launched.stderr.read()[-6000:]}")
        if time.monotonic() > deadline:
            kill_all(launched)
            pytest.fail(f"the run did not reach {stage}'s step {KILLED_AT}")
        time.sleep(0.5)
    kill_all(launched)
    return printed.read_text()


def kill_all(launched: subprocess.Popen) -> None:
    """SIGKILL the launch and every process under it: torchrun starts each worker in a session of its own,
    so killing the launcher's process group would leave them waiting."""
    import psutil

    everyone = [launched.pid, *(p.pid for p in psutil.Process(launched.pid).children(recursive=True))]
    for pid in everyone:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    launched.wait()


def final_weights(run_dir: Path, stage: str) -> dict[str, torch.Tensor]:
    model = run_dir / stage / "model"
    if stage == "trm":
        return torch.load(model / "model.pt")
    return load_file(model / "model.safetensors")


@pytest.mark.parametrize("processes", [1, 2])
def test_runs_killed_while_saving_resume_to_the_weights_of_a_run_that_never_stopped(processes, tmp_path):
    run(processes, recipe(tmp_path / "straight"))
    killed = recipe(tmp_path / "killed")
    run_dir = tmp_path / "killed" / "run"
    stages = ["sft", "grpo", "trm"]
    for number, stage in enumerate(stages):
        resume = ["--resume"] if number else []
        printed = kill_while_saving(processes, stage, tmp_path / f"{stage}.stalled", killed, *resume)
        if number:  # the stage killed last time went on from its step-2 checkpoint, not the partial one
            assert (
                f"=== stage {stages[number - 1]} ({stages[number - 1]}): resuming from step {SAVE_STEPS} "
                in printed
            )
        checkpoints = run_dir / stage / "checkpoints"
        # The checkpoint being written is whole but was never published: a resume cannot pick it.
        assert {p.name for p in (checkpoints / PARTIAL).iterdir()} & {"checkpoint-4", "step-000004"}
        assert not (checkpoints / f"step-{KILLED_AT:06d}").exists()
        assert latest_checkpoint(checkpoints).name == f"step-{SAVE_STEPS:06d}"
    banner = run(processes, killed, "--resume")
    assert f"=== stage trm (trm): resuming from step {SAVE_STEPS} " in banner
    assert not (run_dir / "trm" / "checkpoints" / PARTIAL).exists()  # cleared by the resume

    for stage in ("sft", "grpo", "trm"):
        expected = final_weights(tmp_path / "straight" / "run", stage)
        resumed = final_weights(run_dir, stage)
        assert expected.keys() == resumed.keys()
        for name, weight in expected.items():
            torch.testing.assert_close(resumed[name], weight, rtol=0, atol=1e-6, msg=f"{stage}: {name}")
