import threading

import pytest

from rewards.math_answer import math_answer


def score(completion: str, gold: str) -> float | None:
    return math_answer(["q"], [completion], answer=[gold])[0]


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("42", "42"),
        ("\\boxed{42}", "42"),
        ("The answer is $\\boxed{42}$.", "42"),
        ("**Final Answer:** 42", "42"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{2}{4}", "1/2"),
        ("\\dfrac{\\sqrt{2}}{2}", "\\frac{\\sqrt2}{2}"),
        ("x = 3", "3"),
        ("1,000", "1000"),
        ("5, 3", "3, 5"),
        ("\\boxed{2\\pi}", "$2\\pi$"),
        ("$\\frac{1}{2}$", "\\boxed{\\frac12}"),
    ],
)
def test_equal_answers_in_other_forms_count(answer, gold):
    assert score(f"<think>working</think>{answer}", gold) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "42",  # no think block
        "<think>so it is 42</think>",  # the answer only inside the reasoning
        "<think>so it is 42</think>I am not sure.",
        "<think>so it is 42",  # unclosed
        "<think>a</think><think>b</think>42",
        "<think>.</think>41",
        "<think>.</think>42 or 41",
        "<think>.</think>41, 42",
        "<think>.</think>\\boxed{41} \\boxed{42}",
        "<think>.</think>\\boxed{42} \\boxed{42}",  # one box only
        "<think>.</think>42 42 42 42",
        "<think>.</think>42, 42, 42",
        "<think>.</think>42 blah blah 17",
        "<think>.</think>" + "42" * 5000,  # huge: refused without parsing
    ],
)
def test_hedged_hidden_and_wrong_answers_score_zero(completion):
    assert score(completion, "42") == 0.0


def test_a_gold_answer_that_cannot_be_parsed_does_not_apply():
    assert score("<think>.</think>42", "") is None
    assert score("<think>.</think>42", "\\boxed{1} \\boxed{2}") is None
    assert score("<think>.</think>42", "\\frac{") is None


def test_off_the_main_thread_it_scores_in_a_worker_process():
    results = {}
    thread = threading.Thread(
        target=lambda: results.update(
            scores=math_answer(["q"] * 2, ["<think>.</think>0.5", "<think>.</think>2"], answer=["1/2", "1/2"])
        )
    )
    thread.start()
    thread.join()
    assert results["scores"] == [1.0, 0.0]
