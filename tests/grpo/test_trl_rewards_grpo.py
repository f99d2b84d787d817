"""GRPO steps with rewards written for TRL (``trl.rewards`` as installed) and in open-r1's shape, on
conversational prompt data carrying a ``solution`` column and columns no recipe maps."""

import json
from pathlib import Path

import pytest

from reasonkit.grpo import trainer as grpo_trainer
from reasonkit.grpo.scoring import RewardError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe

OPEN_R1 = str(Path(__file__).parents[1] / "helpers" / "open_r1_style.py")
TRL_REWARDS = [
    {"name": "trl.rewards:accuracy_reward"},
    {"name": "trl.rewards:reasoning_accuracy_reward"},
    {"name": "trl.rewards:think_format_reward", "weight": 0.2},
    {"name": "trl.rewards:get_cosine_scaled_reward", "args": {"max_len": 8}},
    {"name": "trl.rewards:get_repetition_penalty_reward", "args": {"ngram_size": 2}},
    {
        "name": "trl.rewards:get_soft_overlong_punishment",
        "args": {"max_completion_len": 8, "soft_punish_cache": 4},
    },
]
OPEN_R1_REWARDS = [
    {"name": f"{OPEN_R1}:{name}"}
    for name in [
        "accuracy_reward",
        "format_reward",
        "tag_count_reward",
        "len_reward",
        "needs_difficulty",
        "logs_progress",
    ]
]


def conversational_rows(path: Path) -> str:
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "Think, then answer."},
                {"role": "user", "content": f"What is {a} * 3?"},
            ],
            "solution": f"${3 * a}$",
            "difficulty": a % 3,
        }
        for a in range(1, 9)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def recipe(tmp_path, model_dir, rewards, **stage):
    return build_recipe(
        {
            "output_dir": str(tmp_path / "run"),
            "seed": 1,
            "model": {"path": str(model_dir)},
            "data": {"train": {"path": conversational_rows(tmp_path / "prompts.jsonl")}},
            "stages": {
                "grpo": {
                    "rewards": rewards,
                    "prompts_per_step": 2,
                    "num_generations": 2,
                    "max_new_tokens": 8,
                    "beta": 0.0,
                    "max_steps": 2,
                    "save_steps": 100,
                    "engine": "transformers",
                    "reward_workers": 2,
                    **stage,
                }
            },
        }
    )


def records(tmp_path, name):
    path = tmp_path / "run" / "grpo" / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_rewards_and_open_r1_style_rewards_train_on_conversational_data(tmp_path, tiny_model_dir):
    run_recipe(recipe(tmp_path, tiny_model_dir, TRL_REWARDS + OPEN_R1_REWARDS))
    steps = records(tmp_path, "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 2]
    for spec in TRL_REWARDS + OPEN_R1_REWARDS:
        for m in steps:
            assert m[f"reward/{spec['name']}/failed"] == 0, (spec["name"], m)
            assert m[f"reward/{spec['name']}/none"] == 0, (spec["name"], m)
    # A column no recipe maps (difficulty: 1 or 2 or 0, times 0.1) reached the reward under its name.
    assert all(0 <= m[f"reward/{OPEN_R1}:needs_difficulty/mean"] <= 0.2 for m in steps)
    # trainer_state.global_step through log_metric: the steps finished before each batch.
    assert [m[f"reward/{OPEN_R1}:logs_progress/global_step"] for m in steps] == [0.0, 1.0]
    # log_extra: one value per completion, next to the prompts and completions of that step.
    table = records(tmp_path, "completions.jsonl")
    assert [t["step"] for t in table] == [1, 2]
    for t in table:
        lengths = t[f"{OPEN_R1}:logs_progress/length"]
        assert lengths == [len(c) for c in t["completion"]] and len(lengths) == 4
        assert t["prompt"][0][1]["content"].startswith("What is")
        # TRL's accuracy_reward logs the solution it compared with, per completion: the row's.
        answers = [str(3 * int(p[1]["content"].split()[2])) for p in t["prompt"]]
        assert t["trl.rewards:accuracy_reward/solution"] == [f"${a}$" for a in answers]


def test_conversational_reward_missing_its_column_is_refused_before_the_first_step(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.setattr(grpo_trainer.GRPORun, "_step", lambda self: pytest.fail("a step ran"))
    (tmp_path / "gold.py").write_text("def needs_gold(completions, gold, **kwargs):\n    return [0.0]\n")
    rewards = [{"name": "trl.rewards:accuracy_reward"}, {"name": f"{tmp_path}/gold.py:needs_gold"}]
    with pytest.raises(
        RewardError,
        match=r"needs dataset column\(s\) \['gold'\]; the prompt data has \['difficulty', 'prompt', 'solution'\]",
    ):
        run_recipe(recipe(tmp_path, tiny_model_dir, rewards))
