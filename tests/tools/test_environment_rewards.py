"""A reward that reads TRL's `environments` (the instance each rollout ran in, as TRL's OpenEnv guide
writes rewards: `[env.reward for env in environments]`) scores a GRPO stage with an environment_factory
from the state the rollout left; `validate` refuses one where no instance is kept for it."""

from pathlib import Path

import pytest

from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from tests.tools.test_grpo_tools import read_jsonl, tool_recipe, write_rows

HELPERS = Path(__file__).parents[1] / "helpers" / "environment_rewards.py"
READER = {"name": f"{HELPERS}:calls_made"}
ENVIRONMENT = {"environment_factory": f"{HELPERS}:CalculatorEnv"}


def test_the_reward_reads_the_state_each_rollout_left_in_its_environment(tool_model_dir, tmp_path):
    run_recipe(tool_recipe(tmp_path / "run", tool_model_dir, write_rows(tmp_path / "rows.jsonl"), ENVIRONMENT,
                           rewards=[READER]))  # fmt: skip
    steps = [r for r in read_jsonl(tmp_path / "run" / "grpo" / "metrics.jsonl") if "reward/mean" in r]
    assert len(steps) == 2
    reader = f"reward/{READER['name']}"  # the metrics name a reward by its spec
    for step in steps:
        # get_reward() was read as each rollout ended; the reward read the same instances when the batch
        # was scored: no instance was reset or swapped in between.
        assert step[f"{reader}/mean"] == pytest.approx(step["reward/CalculatorEnv/mean"])
        assert step[f"{reader}/mean"] > 0  # the model called the environment's tool
        assert step[f"{reader}/failed"] == 0


def test_validate_refuses_a_reward_reading_environments_where_none_are_kept(tool_model_dir, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    with pytest.raises(ConfigError) as refused:
        tool_recipe(tmp_path / "run", tool_model_dir, data, rewards=[READER])
    assert "stages.grpo.rewards[0]: " in str(refused.value)
    assert "reads `environments` (the instances of TRL's environment_factory); give the stage" in str(
        refused.value
    )
    with pytest.raises(ConfigError) as refused:
        tool_recipe(tmp_path / "run", tool_model_dir, data, ENVIRONMENT, rewards=[READER], async_rollouts=1,
                    engine="vllm_server")  # fmt: skip
    assert "does not keep until it is scored (the next batch resets them): set async_rollouts: 0" in str(
        refused.value
    )


def test_rewards_check_refuses_a_reward_reading_environments(capsys):
    from reasonkit.cli import main

    assert main(["rewards", "check", READER["name"]]) == 2
    assert "reads `environments`" in capsys.readouterr().err
