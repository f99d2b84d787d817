"""The format-shaping and length rewards."""

import pytest

from rewards.format import think_format, think_tags
from rewards.length import length_scaled, soft_overlong

SHAPES = [
    "<think>a</think>1",
    "<think>a</think>",
    "<think>a",
    "1",
    "",
    "x<think>a</think>1",
    "<think>a</think>1</think>",
]


def test_think_tags_gives_full_credit_exactly_where_think_format_does():
    tags, strict = think_tags(["q"] * len(SHAPES), SHAPES), think_format(["q"] * len(SHAPES), SHAPES)
    assert [t == 1.0 for t in tags] == [s == 1.0 for s in strict]
    assert tags[1] > tags[2] > tags[3] == tags[4] == 0.0  # closer to the format, more credit


def test_soft_overlong_counts_tokens_and_uses_the_stage_limit_unless_given_one():
    ids = [[0] * n for n in (10, 40, 45, 50, 60)]
    assert soft_overlong(["q"] * 5, ["a"] * 5, ids, max_new_tokens=[50] * 5) == [0.0, 0.0, -0.5, -1.0, -1.0]
    assert soft_overlong(["q"] * 5, ["a"] * 5, ids, max_tokens=100, buffer_tokens=60) == pytest.approx(
        [0.0, 0.0, -1 / 12, -1 / 6, -1 / 3]
    )


def test_length_scaled_is_clamped_past_the_limit_not_periodic():
    completions = ["<think>.</think>4"] * 4 + ["<think>.</think>5"] * 4
    lengths = [100, 200, 300, 1000] * 2
    scores = length_scaled(
        ["q"] * 8, completions, [[0] * n for n in lengths], max_tokens=100, answer=["4"] * 8
    )
    assert scores[:4] == [0.5] * 4 and scores[4:] == [-0.5] * 4


def test_length_scaled_follows_its_verifier_and_keeps_none():
    scores = length_scaled(
        ["q"] * 3,
        ["<think>.</think>0.5", "<think>.</think>0.5", "<think>.</think>0.5"],
        [[0]] * 3,
        max_tokens=100,
        verifier="exact_answer",
        answer=["1/2", "0.5", ""],
    )
    assert scores[0] < 0 < scores[1] and scores[2] is None
    assert length_scaled(["q"], ["<think>.</think>0.5"], [[0]], max_tokens=100, answer=["1/2"])[0] > 0  # math
