"""The trm stage under `accelerate launch` on 2 CPU processes (gloo) makes the same updates as one process
holding the whole batch: each process holds half the slots, each slot draws the same examples either way,
and DDP's gradient average over equal shares is the mean over all slots."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from tests.distributed.test_multiprocess import free_port

LEARNING_RATE = 3e-3
# Adam's first steps move a weight by about lr wherever its gradient is not ~0; another reduction order
# changes near-zero gradients' steps by a few % of lr (as in test_multiprocess).
WEIGHT_TOLERANCE = 0.05 * LEARNING_RATE


def write_recipe(tmp_path, name: str) -> str:
    stage = {
        "type": "trm",
        "task": {
            "name": "sudoku",
            "sudoku": {"size": 6, "min_clues": 12},
            "train_size": 40,
            "test_size": 8,
            "augment": True,
        },
        "network": {"hidden_size": 32, "latent_steps": 2, "recursions": 2},
        "supervision_steps": 2,  # slots finish their examples and draw new ones within the run
        "halt_exploration": 0.5,
        "batch_size": 8,
        "max_steps": 4,
        "learning_rate": LEARNING_RATE,
        "ema": False,
        "logging_steps": 1,
        "eval_steps": [1, 2],
    }
    raw = {"output_dir": str(tmp_path / name), "report_to": ["jsonl"], "stages": {"trm": stage}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def run(command: list[str]) -> None:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")


def test_two_processes_make_the_same_updates_as_one(tmp_path):
    run([sys.executable, "-m", "reasonkit", "run", write_recipe(tmp_path, "one")])
    run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            "-m",
            "reasonkit",
            "run",
            write_recipe(tmp_path, "two"),
        ]
    )
    one = torch.load(tmp_path / "one" / "trm" / "model" / "model.pt")
    two = torch.load(tmp_path / "two" / "trm" / "model" / "model.pt")
    for name, weight in one.items():
        torch.testing.assert_close(two[name], weight, rtol=0, atol=WEIGHT_TOLERANCE, msg=name)
    metrics = [
        [
            json.loads(line)
            for line in (tmp_path / run_name / "trm" / "metrics.jsonl").read_text().splitlines()
        ]
        for run_name in ("one", "two")
    ]
    for a, b in zip(*metrics):
        assert b["loss"] == pytest.approx(
            a["loss"], rel=1e-4
        )  # over all 8 slots, gathered from both processes
        assert b["train_exact"] == a["train_exact"]
    summaries = [
        json.loads((tmp_path / r / "summary.json").read_text())["stages"]["trm"] for r in ("one", "two")
    ]
    assert [s["processes"] for s in summaries] == [1, 2]
    from reasonkit.trm.trainer import build_model, load_trm

    stage, kind, _ = load_trm(tmp_path / "one" / "trm" / "model")
    torch.manual_seed(0)  # the recipe's seed: the initial weights
    initial = build_model(stage, kind).state_dict()
    moved = max((one[n] - initial[n]).abs().max().item() for n in one)
    assert moved > 10 * WEIGHT_TOLERANCE  # the updates are large next to the tolerance
