import pytest

from rewards.contract import format_completion, parse_completion, prompt_opens_think


@pytest.mark.parametrize("prefilled", [False, True])
def test_round_trip(prefilled):
    text = format_completion("27 * 30 = 810.", "810", think_prefilled=prefilled)
    parsed = parse_completion(text, think_prefilled=prefilled)
    assert (parsed.trace, parsed.answer) == ("27 * 30 = 810.", "810")


@pytest.mark.parametrize(
    "text",
    [
        "<think>the answer is 42",  # unclosed: the answer would be read out of the reasoning
        "<think>a</think>42<think>b</think>43",  # two think blocks
        "41 <think>a</think>42",  # text before the think block
        "</think>42",  # close without open
        "42",  # no think block where one is required
        "",
    ],
)
def test_malformed_completions_have_no_answer(text):
    assert parse_completion(text).answer is None


def test_answer_is_only_read_after_the_think_block():
    assert parse_completion("<think>maybe 41</think>42").answer == "42"
    assert parse_completion("<think>42</think>").answer == ""


def test_direct_answers_without_think():
    assert parse_completion(" 918\n", require_think=False).answer == "918"
    assert parse_completion("<think>x</think>918", require_think=False).answer == "918"


def test_prompt_opens_think():
    assert prompt_opens_think("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_think("<|im_start|>assistant\n")
