import doctest
import textwrap

import pytest

import rewards
import rewards.answer
import rewards.format
from rewards import RewardNotFound


def test_doctests():
    for module in (rewards.answer, rewards.format):
        assert doctest.testmod(module).failed == 0


def test_by_name_module_and_file(tmp_path):
    assert rewards.get("exact_answer") is rewards.answer.exact_answer
    assert rewards.get("rewards.format:think_format") is rewards.format.think_format
    file = tmp_path / "my_reward.py"
    file.write_text(
        "def shorter_is_better(prompts, completions, **kw):\n    return [-len(c) for c in completions]\n"
    )
    fn = rewards.get(f"{file}:shorter_is_better")
    assert fn(["p", "p"], ["ab", "a"]) == [-2, -1]


def test_unknown_names_list_the_known_ones(tmp_path):
    with pytest.raises(RewardNotFound, match=r"known rewards: .*exact_answer, think_format"):
        rewards.get("exact")
    with pytest.raises(RewardNotFound, match="no function 'nope'"):
        rewards.get("rewards.format:nope")
    with pytest.raises(RewardNotFound, match="cannot import"):
        rewards.get("no_such_module:fn")
    with pytest.raises(RewardNotFound, match="not found"):
        rewards.get(f"{tmp_path}/missing.py:fn")


def test_a_reward_written_for_trl_works_unchanged(tmp_path):
    """The shape of TRL's documented reward functions: completions, plus dataset columns as kwargs."""
    file = tmp_path / "trl_style.py"
    file.write_text(
        textwrap.dedent("""
        import re

        def format_reward_func(completions, **kwargs):
            pattern = r"^<think>.*?</think>.+$"
            return [1.0 if re.match(pattern, c, re.DOTALL) else 0.0 for c in completions]

        def accuracy_reward(completions, answer, **kwargs):
            return [1.0 if c.split("</think>")[-1].strip() == a else 0.0 for c, a in zip(completions, answer)]
    """)
    )
    from reasonkit.grpo.scoring import WeightedReward, check_columns, score_completions

    weighted = [
        WeightedReward("fmt", rewards.get(f"{file}:format_reward_func"), 0.5),
        WeightedReward("acc", rewards.get(f"{file}:accuracy_reward"), 1.0),
    ]
    check_columns(weighted, {"prompt", "answer"})
    scores = score_completions(
        weighted, ["What is 2 * 3?"] * 2, ["<think>2 * 3 = 6.</think>6", "6"], {"answer": ["6", "6"]}
    )
    assert scores.total.tolist() == [1.5, 1.0]
    assert rewards.required_columns(rewards.get(f"{file}:accuracy_reward")) == ["answer"]


def test_none_means_does_not_apply():
    from reasonkit.grpo.scoring import WeightedReward, score_completions

    def sometimes(prompts, completions, **kw):
        return [None, 1.0]

    scores = score_completions([WeightedReward("s", sometimes, 2.0)], ["p", "p"], ["a", "b"], {})
    assert scores.total.tolist() == [0.0, 2.0] and scores.unscored == 1
