"""The latent stage under `accelerate launch` on 2 CPU processes (gloo) makes the same updates as one
process holding the whole batch: every process draws the same global batch and keeps its half, divides its
summed loss by the global token count, and the gradients are summed over processes."""

import json
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.distributed.test_multiprocess import free_port
from tests.distributed.test_trm_parallel import run

LEARNING_RATE = 3e-3
WEIGHT_TOLERANCE = 0.05 * LEARNING_RATE  # as in test_multiprocess: Adam's first steps on near-zero gradients


def write_recipe(tmp_path, model_dir, name: str) -> str:
    stage = {
        "type": "latent",
        "max_stage": 2,
        "thoughts_per_step": 2,
        "steps_per_stage": 2,
        "mix_earlier": 0.5,  # rows at different stages in one batch, split across the processes
        "batch_size": 8,
        "learning_rate": LEARNING_RATE,
        "logging_steps": 1,
        "eval": {"every_stage": False, "max_problems": 4, "max_new_tokens": 8, "diagnose_problems": 2},
    }
    raw = {
        "output_dir": str(tmp_path / name),
        "report_to": ["jsonl"],
        "model": {"path": str(model_dir)},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 8, "train_size": 40}},
        "stages": {"latent": stage},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_two_processes_make_the_same_updates_as_one(tiny_model_dir, tmp_path):
    run([sys.executable, "-m", "reasonkit", "run", write_recipe(tmp_path, tiny_model_dir, "one")])
    run(
        [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()),
            "-m", "reasonkit", "run", write_recipe(tmp_path, tiny_model_dir, "two"),
        ]
    )  # fmt: skip
    one = load_file(tmp_path / "one" / "latent" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "latent" / "model" / "model.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    for name, weight in one.items():
        torch.testing.assert_close(two[name], weight, rtol=0, atol=WEIGHT_TOLERANCE, msg=name)
    moved = max((one[n][: initial[n].shape[0]] - initial[n]).abs().max().item() for n in initial)
    assert moved > 10 * WEIGHT_TOLERANCE  # the updates are large next to the tolerance
    metrics = [
        [json.loads(line) for line in (tmp_path / r / "latent" / "metrics.jsonl").read_text().splitlines()]
        for r in ("one", "two")
    ]
    steps = [[m for m in records if "loss" in m] for records in metrics]
    assert len(steps[0]) == len(steps[1]) == 4
    for a, b in zip(*steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)  # over the whole batch, from both processes
        assert b["tokens"] == a["tokens"] and b["short_traces"] == a["short_traces"]
    summaries = [
        json.loads((tmp_path / r / "summary.json").read_text())["stages"]["latent"] for r in ("one", "two")
    ]
    assert [s["processes"] for s in summaries] == [1, 2]
    assert summaries[1]["models"]["latent_stage2"]["test"]["n"] == 4  # evaluated once, by the main process
