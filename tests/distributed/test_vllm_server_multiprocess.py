"""The vLLM server engine under a multi-process trainer, launched for real (accelerate, gloo on CPU):
every process samples its share from the server, the push gathers ZeRO-3 shards on every process and
is sent by the first, and after each update the server's log-probs equal the trainer's."""

import json

import pytest
import yaml

from tests.distributed.test_multiprocess import HELPERS, launch


@pytest.mark.vllm
@pytest.mark.parametrize("config, async_rollouts", [("zero3", 0), ("ddp", 1)])
def test_server_follows_the_policy_on_two_processes_zero3_and_async(
    config, async_rollouts, vllm_server, tiny_model_dir, tmp_path
):
    """ZeRO-3, synchronous: the server's log-probs equal the trainer's at every step. DDP with
    async_rollouts 1: each process's background generation overlaps training; samples are at most one
    update old, and those sampled by the current weights still match the trainer exactly."""
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "seed": 1,
        "model": {"path": str(tiny_model_dir)},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
        "stages": {
            "grpo": {
                "type": "grpo",
                "rewards": [{"name": str(HELPERS / "toy_rewards.py") + ":digit_fraction"}],
                "prompts_per_step": 4,
                "num_generations": 4,
                "max_new_tokens": 8,
                "learning_rate": 3e-3,
                "beta": 0.04,
                "max_steps": 3,
                "save_steps": 100,
                "reward_workers": 0,
                "engine": "vllm_server",
                "vllm_server": {"urls": [vllm_server.url], "startup_timeout": 60},
                "async_rollouts": async_rollouts,
            }
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    launch("run_recipe.py", tmp_path / "recipe.yaml", config=config, processes=2)
    lines = (tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[-1]["kl"] > 0  # the policy moved
    for r in records:
        assert r["weight_version_lag/max"] <= async_rollouts
        if r["weight_version_lag/max"] == 0:  # both processes' samples, all from the current weights
            assert r["mismatch/abs_logprob_gap"] < 1e-4, records
    if not async_rollouts:
        assert all(r["weight_version_lag/max"] == 0 for r in records)
    else:
        assert records[0]["weight_version_lag/max"] == 0 and any(
            r["weight_version_lag/mean"] > 0 for r in records
        )
