"""`recipes/accelerate/multi_node_zero3.yaml` as shipped, launched as 2 machines x 1 process on this one
(`--machine_rank 0` and `1`, main_process_ip 127.0.0.1: two commands, as on two machines; gloo on CPU).

GRPO's update and SFT's training equal one process's on the whole batch, every machine writes its part
of each checkpoint into the one run folder, and machines that do not share that folder are refused at
start with the reason (machine 1 then runs in a mount namespace of its own, where a tmpfs hides what
machine 0 writes: what a machine with its own disk sees).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.distributed.test_multiprocess import CONFIGS, HELPERS, assert_same_update, free_port, update

MACHINES = 2


def launch_machines(tmp_path: Path, *args, second_machine_prefix: list[str] = ()) -> list[tuple[int, str]]:
    """Run ARGS (a script and its arguments) as machine 0 and machine 1 at once; each machine's exit code
    and what it printed. (run_recipe.py is `reasonkit run` without DeepSpeed's CPU op build.)"""
    port = free_port()
    running = []
    for rank in range(MACHINES):
        command = [sys.executable, "-m", "accelerate.commands.launch"]
        command += ["--config_file", str(CONFIGS / "multi_node_zero3.yaml")]
        command += ["--num_machines", str(MACHINES), "--num_processes", str(MACHINES)]
        command += ["--machine_rank", str(rank), "--main_process_ip", "127.0.0.1"]
        command += ["--main_process_port", str(port), "--mixed_precision", "no", *map(str, args)]
        if rank == 1:
            command = [*second_machine_prefix, *command]
        printed = (tmp_path / f"machine-{rank}.out").open(
            "w+"
        )  # not a pipe: one machine must not wait on the other's
        running.append(
            (subprocess.Popen(command, stdout=printed, stderr=subprocess.STDOUT, text=True), printed)
        )
    results = []
    for process, printed in running:
        code = process.wait(timeout=600)
        printed.seek(0)
        results.append((code, printed.read()))
    return results


def check(results: list[tuple[int, str]]) -> None:
    for rank, (code, printed) in enumerate(results):
        if code != 0:
            pytest.fail(f"machine {rank} failed ({code}):\n{printed[-6000:]}")


def test_grpo_update_on_two_machines_is_the_update_of_one_process(tiny_model_dir, tmp_path):
    one = update(tiny_model_dir, tmp_path / "one")
    check(launch_machines(tmp_path, HELPERS / "grpo_update.py", tiny_model_dir, tmp_path / "two"))
    two = torch.load(tmp_path / "two" / "result.pt")
    assert_same_update(one, two, load_file(Path(tiny_model_dir) / "model.safetensors"))


def sft_recipe(tmp_path: Path, name: str, model_dir, batch_size: int) -> Path:
    raw = {
        "output_dir": str(tmp_path / name / "run"),
        "seed": 1,
        "model": {"path": str(model_dir)},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
        "stages": {
            "sft": {
                "type": "sft",
                "learning_rate": 3e-3,
                "batch_size": batch_size,  # per process
                "max_steps": 4,
                "save_steps": 2,
                "max_length": 128,
            }
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sft_on_two_machines_trains_as_one_process_into_one_run_folder(tiny_model_dir, tmp_path):
    from reasonkit.cli import main

    assert main(["run", str(sft_recipe(tmp_path, "one", tiny_model_dir, batch_size=8))]) == 0
    check(
        launch_machines(tmp_path, HELPERS / "run_recipe.py", sft_recipe(tmp_path, "two", tiny_model_dir, 4))
    )

    run = tmp_path / "two" / "run"
    checkpoint = run / "sft" / "checkpoints" / "step-000002"
    # Each machine wrote its part (its random state; DeepSpeed's shards), process 0 the rest and the manifest.
    assert {"rng_state_0.pth", "rng_state_1.pth", "reasonkit_manifest.json"} <= {
        p.name for p in checkpoint.iterdir()
    }
    assert json.loads((run / "summary.json").read_text())["stages"]["sft"]["steps"] == 4
    expected = load_file(tmp_path / "one" / "run" / "sft" / "model" / "model.safetensors")
    trained = load_file(run / "sft" / "model" / "model.safetensors")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert max((expected[n] - initial[n]).abs().max().item() for n in initial) > 1e-3  # it trained
    for name, weight in expected.items():
        torch.testing.assert_close(trained[name], weight, rtol=0, atol=5e-5, msg=name)


def test_machines_that_do_not_share_the_output_folder_are_refused_at_start(tiny_model_dir, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("no mount namespaces here: a machine with a disk of its own cannot be imitated")
    hidden = tmp_path / "outputs"  # machine 1 sees an empty folder here, as on a disk of its own
    hidden.mkdir()
    recipe = sft_recipe(tmp_path, "outputs", tiny_model_dir, 4)
    own_disk = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs {hidden} && exec "$@"', "own-disk"]
    results = launch_machines(tmp_path, HELPERS / "run_recipe.py", recipe, second_machine_prefix=own_disk)
    assert all(code != 0 for code, _ in results)
    message = results[0][1]  # the main machine's console says why
    assert "is not the same folder for every process: process 1 on" in message, message[-3000:]
    assert "a shared disk" in message
    assert (
        "reasonkit/" not in message
    )  # one message from us, not a traceback (the launcher adds its own report)
    assert not (hidden / "run" / "sft").exists()  # refused before any stage began
