"""A recurrent-depth model trained by the sft stage under `accelerate launch` on 2 CPU processes (gloo)
makes the same updates as one process holding the whole batch: every process draws the same r at each
step (the draws are seeded by the recipe's seed and the count of forwards so far, not by the rank), and
DDP sums the gradients of the truncated chain as it does any other model's.

The initial state's noise is drawn for each process's own rows (its shape is theirs), so the two runs are
compared with `state_std: 0` in the model's config: what is tested is the draw of r and the gradient."""

import json
import sys

import torch
import yaml
from safetensors.torch import load_file

from reasonkit.models import save_tiny_model
from reasonkit.recurrent.schema import RecurrentLayout
from tests.conftest import arithmetic_corpus
from tests.distributed.test_multiprocess import free_port
from tests.distributed.test_trm_parallel import run
from tests.recurrent.test_stage import DATA

LEARNING_RATE = 3e-3
WEIGHT_TOLERANCE = 0.05 * LEARNING_RATE  # as in test_multiprocess: Adam's first steps on near-zero gradients
STEPS = 4


def recurrent_model(directory):
    layout = RecurrentLayout(
        prelude_layers=1, core_layers=1, coda_layers=1, mean_recurrence=2, backprop_depth=1
    )
    save_tiny_model(directory, arithmetic_corpus(), hidden_size=64, num_heads=2, intermediate_size=128,
                    recurrent=layout)  # fmt: skip
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "state_std": 0.0}))
    return directory


def write_recipe(tmp_path, model_dir, name: str, batch_size: int) -> str:
    stage = {
        "traces": False,
        "learning_rate": LEARNING_RATE,
        "batch_size": batch_size,  # per process
        "max_steps": STEPS,
        "max_length": 64,
        "logging_steps": 1,
    }
    raw = {
        "output_dir": str(tmp_path / name),
        "report_to": ["jsonl"],
        "model": {"path": str(model_dir)},
        "data": DATA,
        "stages": {"sft": stage},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_two_processes_make_the_same_updates_as_one(tmp_path):
    model_dir = recurrent_model(tmp_path / "model")
    run([sys.executable, "-m", "reasonkit", "run", write_recipe(tmp_path, model_dir, "one", batch_size=8)])
    run(
        [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()),
            "-m", "reasonkit", "run", write_recipe(tmp_path, model_dir, "two", batch_size=4),
        ]
    )  # fmt: skip
    initial = load_file(model_dir / "model.safetensors")
    one = load_file(tmp_path / "one" / "sft" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "sft" / "model" / "model.safetensors")
    assert int(one["model.draws"]) == int(two["model.draws"]) == STEPS  # one r per step, in every process
    for name, weight in one.items():
        torch.testing.assert_close(two[name], weight, rtol=0, atol=WEIGHT_TOLERANCE, msg=name)
    moved = max((one[n] - initial[n]).abs().max().item() for n in initial if n != "model.draws")
    assert moved > 10 * WEIGHT_TOLERANCE  # the updates are large next to the tolerance
    losses = [step_losses(tmp_path / folder / "sft" / "metrics.jsonl") for folder in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == STEPS
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=0)


def step_losses(metrics) -> list[float]:
    return [
        record["loss"] for record in map(json.loads, metrics.read_text().splitlines()) if "loss" in record
    ]
