import textwrap

import pytest

import rewards
import rewards.answer
import rewards.code
import rewards.format
import rewards.length
import rewards.math_answer
from rewards import RewardNotFound


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
    with pytest.raises(RewardNotFound, match=r"known rewards: .*exact_answer, .*think_format"):
        rewards.get("exact")
    with pytest.raises(RewardNotFound, match="rewards.format has no 'nope'"):
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
    from reasonkit.grpo.schema import RewardSpec
    from reasonkit.grpo.scoring import RewardScorer, check_columns, load_rewards

    weighted = load_rewards(
        [RewardSpec(f"{file}:format_reward_func", 0.5), RewardSpec(f"{file}:accuracy_reward", 1.0)]
    )
    check_columns(weighted, {"prompt", "answer"})
    scorer = RewardScorer(weighted, workers=2, timeout=10)
    try:
        scores = scorer.score(
            ["What is 2 * 3?"] * 2, ["<think>2 * 3 = 6.</think>6", "6"], {"answer": ["6", "6"]}
        )
    finally:
        scorer.close()
    assert scores.total.tolist() == [1.5, 1.0]
    assert rewards.required_columns(rewards.get(f"{file}:accuracy_reward")) == ["answer"]


def test_none_means_does_not_apply():  # exact_answer: no gold answer, no score
    from reasonkit.grpo.schema import RewardSpec
    from reasonkit.grpo.scoring import RewardScorer, load_rewards

    scorer = RewardScorer(load_rewards([RewardSpec("exact_answer", 2.0)]), workers=0, timeout=1)
    scores = scorer.score(["p", "p"], ["<think>.</think>4", "<think>.</think>4"], {"answer": ["", "4"]})
    assert scores.total.tolist() == [0.0, 2.0] and scores.unscored == 1
