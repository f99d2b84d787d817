import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonkit.config import DatasetSource
from reasonkit.grpo import trainer as grpo_trainer
from reasonkit.grpo import update as grpo_update
from reasonkit.grpo.scoring import RewardError
from reasonkit.grpo.update import TrainingError
from reasonkit.manifest import read_manifest
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.conftest import TINY_SIZES

TOY = str(Path(__file__).parents[1] / "helpers" / "toy_rewards.py")


def grpo_recipe(output_dir, reward="digit_fraction", **stage):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "seed": 3,
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 200}},
            "stages": {
                "grpo": {
                    "rewards": [{"name": f"{TOY}:{reward}"}],
                    "prompts_per_step": 4,
                    "num_generations": 8,
                    "max_new_tokens": 8,
                    "learning_rate": 3e-3,
                    "beta": 0.0,
                    "max_steps": 20,
                    "save_steps": 100,
                    "engine": "transformers",  # tests/rollout/test_vllm_engine.py runs GRPO on vLLM
                    **stage,
                }
            },
        }
    )


def metrics(output_dir) -> list[dict]:
    return [
        json.loads(line) for line in (Path(output_dir) / "grpo" / "metrics.jsonl").read_text().splitlines()
    ]


def test_toy_task_reward_goes_up(tmp_path):
    run_recipe(grpo_recipe(tmp_path))
    rewards = [m["reward/mean"] for m in metrics(tmp_path)]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.05, rewards
    for record in metrics(tmp_path):
        # one reward of weight 1, none failed: the total is that reward
        assert record[f"reward/{TOY}:digit_fraction/mean"] == pytest.approx(record["reward/mean"], abs=1e-6)
        assert record["kl"] == 0  # beta = 0: no reference model
        assert 0 <= record["clip_fraction"] <= 1 and record["entropy"] > 0 and record["tokens_per_second"] > 0
        assert 1 <= record["completion_length"] <= 8 and 0 <= record["truncated"] <= 1
        assert record["learning_rate"] == 3e-3  # constant, no warm-up
        assert record["skipped"] >= record["zero_variance_groups"] and record["excluded"] == 0
        assert "accuracy" in record  # the arithmetic task has answers (a random model gets none right)
    manifest = read_manifest(tmp_path / "grpo" / "model")
    assert (
        manifest["objective"]["kl"]["estimator"] == "k3"
        and manifest["objective"]["loss_aggregation"] == "sequence_mean"
    )
    assert (tmp_path / "grpo" / "curves.png").exists()


def final_weights(output_dir):
    return load_file(Path(output_dir) / "grpo" / "model" / "model.safetensors")


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    settings = {"max_steps": 4, "save_steps": 2, "beta": 0.04, "num_iterations": 2}
    run_recipe(grpo_recipe(tmp_path / "straight", **settings))

    real_step = grpo_trainer.GRPORun._step
    calls = {"n": 0}

    def dies_at_step_three(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill after the step-2 checkpoint
        return real_step(self)

    monkeypatch.setattr(grpo_trainer.GRPORun, "_step", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(grpo_recipe(tmp_path / "killed", **settings))
    monkeypatch.setattr(grpo_trainer.GRPORun, "_step", real_step)
    assert (tmp_path / "killed" / "grpo" / "checkpoints" / "step-000002").is_dir()
    assert (
        read_manifest(tmp_path / "killed" / "grpo" / "checkpoints" / "step-000002")["objective"]["kl"]["beta"]
        == 0.04
    )

    run_recipe(grpo_recipe(tmp_path / "killed", **settings), resume=True)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert [m["reward/mean"] for m in metrics(tmp_path / "straight")] == [
        m["reward/mean"] for m in metrics(tmp_path / "killed")
    ]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = grpo_update.grpo_loss
    calls = {"n": 0}

    def nan_on_third_step(*args, **kwargs):
        calls["n"] += 1
        outputs = real(*args, **kwargs)
        if calls["n"] >= 3:
            outputs.loss = outputs.loss * float("nan")
        return outputs

    monkeypatch.setattr(grpo_update, "grpo_loss", nan_on_third_step)
    with pytest.raises(TrainingError, match=r"nan at step 3.*step-000002"):
        run_recipe(grpo_recipe(tmp_path, max_steps=5, save_steps=2, token_budget=100000))
    checkpoints = sorted(p.name for p in (tmp_path / "grpo" / "checkpoints").iterdir())
    assert checkpoints == ["step-000002"]
    assert not (tmp_path / "grpo" / "model").exists()


def test_reward_that_raises_on_some_samples_is_reported_and_the_run_goes_on(tmp_path, caplog):
    run_recipe(grpo_recipe(tmp_path, reward="fails_on_seven", max_steps=2))
    failed = [m[f"reward/{TOY}:fails_on_seven/failed"] for m in metrics(tmp_path)]
    assert any(0 < share < 1 for share in failed), failed  # the step went on without those samples
    assert re.search(
        r"fails_on_seven.*failed on \d+ of 32 samples.*ZeroDivisionError.*sample \d+ \(prompt 'What is",
        caplog.text,
    )


def test_reward_that_fails_on_every_sample_stops_the_run(tmp_path):
    with pytest.raises(RewardError, match=r"returns_nan.*failed on every sample.*returned nan"):
        run_recipe(grpo_recipe(tmp_path, reward="returns_nan", max_steps=1))


def test_missing_reward_column_fails_before_the_first_step(tmp_path, monkeypatch):
    monkeypatch.setattr(grpo_trainer.GRPORun, "_step", lambda self: pytest.fail("a step ran"))
    with pytest.raises(
        RewardError, match=r"needs dataset column\(s\) \['tests'\].*\['answer', 'prompt', 'style'\]"
    ):
        run_recipe(grpo_recipe(tmp_path, reward="needs_tests"))


def test_unknown_reward_fails_at_validation():
    from reasonkit.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown reward 'exact_answr'; did you mean 'exact_answer'"):
        build_recipe(
            {
                "output_dir": "x",
                "model": {"tiny": {}},
                "data": {"task": "arithmetic"},
                "stages": {"grpo": {"rewards": [{"name": "exact_answr"}]}},
            }
        )


def test_grpo_prompts_come_from_the_rl_split_when_there_is_one(tmp_path):
    from reasonkit.data import load_prompt_rows, rl_split
    from reasonkit.tasks import arithmetic_splits

    recipe = grpo_recipe(tmp_path)
    assert rl_split(recipe.data) == "train"
    recipe.data.arithmetic.rl_size = 30
    rows = load_prompt_rows(recipe.data, rl_split(recipe.data))
    splits = arithmetic_splits(digits=2, test_size=20, train_size=200, rl_size=30)
    assert [r["prompt"] for r in rows] == [p.prompt for p in splits["rl"]]
    assert {r["answer"] for r in rows} == {p.answer for p in splits["rl"]}
    assert {r["style"] for r in rows} == {"plain"}  # no quick questions in this recipe


def test_reward_and_accuracy_per_value_of_a_column(tmp_path, capsys):
    """The demo's question: which prompts' rewards move. Per value of a column, logged, drawn, summarised."""
    recipe = grpo_recipe(tmp_path, max_steps=4, metrics_by="style")
    recipe.data.arithmetic.quick_share = 0.5
    summary = run_recipe(recipe)["stages"]["grpo"]
    for record in metrics(tmp_path):
        parts = [
            record[f"reward/mean/style={v}"] for v in ("quick", "plain") if f"reward/mean/style={v}" in record
        ]
        assert parts and all(0 <= r <= 1 for r in parts)
        # the whole batch's mean is a weighted mean of its parts' means
        assert min(parts) - 1e-6 <= record["reward/mean"] <= max(parts) + 1e-6
        assert {f"accuracy/style={v}" for v in ("quick", "plain")} & set(record)
    assert set(summary["by_style"]) == {"quick", "plain"}
    assert {"first_reward", "last_reward", "first_accuracy", "last_accuracy"} <= set(
        summary["by_style"]["quick"]
    )
    assert (tmp_path / "grpo" / "curves.png").exists()
    quick = summary["by_style"]["quick"]
    assert f"quick {quick['first_reward']:.3f} -> {quick['last_reward']:.3f}" in capsys.readouterr().out


def test_an_rl_dataset_next_to_a_built_in_task_supplies_the_grpo_prompts(tmp_path):
    """SFT on the built-in task, GRPO on the user's own prompts: the file is read, not the task's split."""
    from reasonkit.data import load_prompt_rows, rl_split

    rl = tmp_path / "rl.jsonl"
    rl.write_text(
        '{"prompt": "What is 2 * 2?", "solution": "4"}\n{"prompt": "What is 3 * 3?", "solution": "9"}\n'
    )
    recipe = grpo_recipe(tmp_path)
    recipe.data.rl = DatasetSource(path=str(rl))
    assert rl_split(recipe.data) == "rl"
    rows = load_prompt_rows(recipe.data, "rl")
    assert [r["solution"] for r in rows] == ["4", "9"]
    assert len(load_prompt_rows(recipe.data, "train")) == 200  # the task still supplies the SFT split
