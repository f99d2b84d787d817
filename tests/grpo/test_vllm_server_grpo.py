"""GRPO on a real vLLM server (``engine: vllm_server``), synchronous and async (one-step-off-policy), and
what a run does when its server dies. Skipped only where vLLM is absent."""

import json
from pathlib import Path

import pytest
import torch

from reasonkit.config import ConfigError
from reasonkit.grpo import trainer as grpo_trainer
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from reasonkit.rollout import EngineError

TOY = str(Path(__file__).parents[1] / "helpers" / "toy_rewards.py")
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
    # step's update and sampled whole by the weights before it (the push waited for it): one update old.
    lags = [(r["weight_version_lag/mean"], r["weight_version_lag/max"]) for r in records]
    assert lags == [(0, 0), (1, 1), (1, 1), (1, 1)], lags
    assert records[0]["mismatch/abs_logprob_gap"] < 1e-4
    for r in records[1:]:
        assert 0 <= r["importance_weight/capped"] <= 1
        assert r["mismatch/abs_logprob_gap"] > 1e-4  # off-policy: sampled by the previous policy


@server_only
def test_async_grpo_killed_while_saving_resumes_to_the_weights_of_a_run_that_never_stopped(
    vllm_server, tiny_model_dir, tmp_path
):
    """The checkpoint holds the batch generated ahead and each batch has its own seed, so a run killed
    (SIGKILL) while writing its step-4 checkpoint resumes from step 2 and trains on the very completions
    the uninterrupted run did, to the same weights."""
    import yaml
    from safetensors.torch import load_file

    from reasonkit.config import to_dict
    from tests.distributed.test_killed_runs import kill_while_saving, run

    def recipe(name):
        settings = {"async_rollouts": 1, "max_steps": 6, "save_steps": 2, "skip_zero_advantage": False}
        raw = to_dict(server_recipe(tmp_path / name, tiny_model_dir, vllm_server.url, **settings))
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    run(1, recipe("straight"))
    kill_while_saving(1, "grpo", tmp_path / "stalled", recipe("killed"))
    printed = run(1, recipe("killed"), "--resume")
    assert "=== stage grpo (grpo): resuming from step 2 " in printed
    untimed = [
        [{k: v for k, v in r.items() if "second" not in k} for r in metrics(tmp_path / name)]
        for name in ("straight", "killed")
    ]
    for straight, resumed in zip(*untimed, strict=True):  # rewards, lags, losses: every step alike
        assert resumed == pytest.approx(straight, rel=1e-5)
    expected = load_file(tmp_path / "straight" / "grpo" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "grpo" / "model" / "model.safetensors")
    for name, weight in expected.items():
        torch.testing.assert_close(resumed[name], weight, rtol=0, atol=1e-6, msg=name)


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
    from tests.helpers.vllm_server_process import running_server

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
