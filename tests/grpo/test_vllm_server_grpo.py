"""GRPO on a real vLLM server (``engine: vllm_server``), synchronous and async (one-step-off-policy), and
what a run does when its server dies. Skipped only where vLLM is absent."""

import json
from pathlib import Path

import pytest

from reasonkit.config import ConfigError, build_recipe
from reasonkit.grpo import trainer as grpo_trainer
from reasonkit.pipeline import run_recipe
from reasonkit.rollout import EngineError

TOY = str(Path(__file__).with_name("toy_rewards.py"))
# Also skipped by the vllm_server fixture where vLLM is absent; marked so `-m vllm` selects them.
server_only = pytest.mark.vllm


def server_recipe(output_dir, model_dir, url, **stage):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "seed": 3,
            "model": {"path": str(model_dir)},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
            "stages": {
                "grpo": {
                    "rewards": [{"name": f"{TOY}:digit_fraction"}],  # varies on a random model
                    "prompts_per_step": 4,
                    "num_generations": 4,
                    "max_new_tokens": 8,
                    "learning_rate": 3e-3,
                    "beta": 0.0,
                    "max_steps": 3,
                    "save_steps": 100,
                    "reward_workers": 0,
                    "engine": "vllm_server",
                    "vllm_server": {"urls": [url], "startup_timeout": 60},
                    **stage,
                }
            },
        }
    )


def metrics(output_dir) -> list[dict]:
    lines = (Path(output_dir) / "grpo" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@server_only
def test_grpo_on_a_vllm_server_samples_the_trainers_weights_after_each_update(
    vllm_server, tiny_model_dir, tmp_path
):
    run_recipe(server_recipe(tmp_path, tiny_model_dir, vllm_server.url))
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        # The server's log-probs of what it sampled equal the trainer's: it holds the updated weights.
        assert r["mismatch/abs_logprob_gap"] < 1e-4, records
        assert r["weight_version_lag/mean"] == 0 and r["weight_version_lag/max"] == 0
    assert records[-1]["grad_norm"] > 0


@server_only
def test_async_grpo_trains_one_step_off_policy_and_measures_the_lag(vllm_server, tiny_model_dir, tmp_path):
    # Every completion runs, so the sampler/trainer gap covers the lagged ones: with β = 0, those of
    # zero-advantage groups would be skipped, and which completions lag depends on timing.
    recipe = server_recipe(
        tmp_path, tiny_model_dir, vllm_server.url, async_rollouts=1, max_steps=4, skip_zero_advantage=False
    )
    run_recipe(recipe)
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    # Step 1 trains on the starting weights' samples. Each later batch was set going before the previous
    # step's push: what was running then finished on the old weights (one update old), requests that had
    # not started waited for the new ones. The lag is at most 1, and measured per completion.
    lags = [r["weight_version_lag/mean"] for r in records]
    assert lags[0] == 0 and records[0]["mismatch/abs_logprob_gap"] < 1e-4
    assert all(r["weight_version_lag/max"] <= 1 for r in records) and sum(lags[1:]) > 0, lags
    for r in records[1:]:
        assert 0 <= r["importance_weight/capped"] <= 1
        if r["weight_version_lag/mean"] > 0:
            assert r["mismatch/abs_logprob_gap"] > 1e-4  # off-policy: sampled by the previous policy


def test_async_rollouts_with_an_engine_on_the_trainers_devices_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="async_rollouts needs an engine that generates apart"):
        server_recipe(tmp_path, tiny_model_dir, "http://127.0.0.1:1", engine="transformers", async_rollouts=1)


@server_only
def test_server_killed_mid_run_stops_it_with_its_last_checkpoint_intact_then_it_resumes(
    vllm_server, tiny_model_dir, tmp_path, monkeypatch
):
    """Two servers (data-parallel rollout, one transfer group): both sample the pushed weights. One is killed
    before step 3: generation there fails, is retried once the server would be back, then the run stops
    naming its URL; the step-2 checkpoint is intact, and the run resumes from it on the other server
    alone (which first receives the checkpoint's weights)."""
    from tests.vllm_server_process import running_server

    with running_server(tiny_model_dir, tmp_path / "victim.log") as victim:
        real_step = grpo_trainer.GRPORun._step

        def step_killing_the_server_at_3(self):
            if self.progress.step + 1 == 3:
                victim.kill()
            return real_step(self)

        monkeypatch.setattr(grpo_trainer.GRPORun, "_step", step_killing_the_server_at_3)
        settings = {"urls": [victim.url, vllm_server.url], "startup_timeout": 3, "retries": 1}
        recipe = server_recipe(tmp_path, tiny_model_dir, victim.url, max_steps=4, save_steps=2)
        recipe.stages["grpo"].vllm_server.__dict__.update(settings)
        with pytest.raises(EngineError, match=f"generation at {victim.url} failed .* last checkpoint intact"):
            run_recipe(recipe)
    monkeypatch.undo()
    checkpoint = tmp_path / "grpo" / "checkpoints" / "step-000002"
    assert (checkpoint / "model.safetensors").is_file()
    before = metrics(tmp_path)
    assert [r["step"] for r in before] == [1, 2]
    assert all(r["mismatch/abs_logprob_gap"] < 1e-4 for r in before)  # both servers had the weights

    run_recipe(
        server_recipe(tmp_path, tiny_model_dir, vllm_server.url, max_steps=4, save_steps=2), resume=True
    )
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(
        r["mismatch/abs_logprob_gap"] < 1e-4 for r in records[2:]
    )  # the checkpoint's weights were pushed
