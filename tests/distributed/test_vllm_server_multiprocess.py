"""The vLLM server engine under a multi-process trainer, launched for real (accelerate, gloo on CPU):
every process samples its share from the server, the push gathers ZeRO-3 shards on every process and
is sent by the first, and after each update the server's log-probs equal the trainer's."""

import json

import pytest
import yaml

from tests.distributed.test_multiprocess import HERE, launch


@pytest.mark.vllm
def test_server_follows_a_zero3_sharded_policy_on_two_processes(vllm_server, tiny_model_dir, tmp_path):
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "seed": 1,
        "model": {"path": str(tiny_model_dir)},
        "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
        "stages": {
            "grpo": {
                "type": "grpo",
                "rewards": [{"name": str(HERE.parent / "grpo" / "toy_rewards.py") + ":digit_fraction"}],
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
            }
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    launch("run_recipe.py", tmp_path / "recipe.yaml", config="zero3", processes=2)
    lines = (tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[-1]["kl"] > 0  # the policy moved
    for r in records:
        assert r["mismatch/abs_logprob_gap"] < 1e-4, records  # both processes' samples, every step
        assert r["weight_version_lag/max"] == 0
