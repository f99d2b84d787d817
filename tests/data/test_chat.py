import pytest

from reasonkit.data.chat import FormatError, PromptFormat, prompt_format, tokenize_for_sft
from rewards.contract import THINK_OPEN


def test_completion_mask_covers_completion_and_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    fmt = prompt_format(tok, think_prefill=None)
    example = tokenize_for_sft(
        tok, fmt, "What is 27 * 34?", "27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918.", "918"
    )
    prompt = [t for t, m in zip(example.input_ids, example.completion_mask) if not m]
    completion = [t for t, m in zip(example.input_ids, example.completion_mask) if m]
    assert example.completion_mask == sorted(example.completion_mask)  # prompt first, then completion
    assert tok.decode(prompt) == "<|user|>What is 27 * 34?<|end|><|assistant|>"
    assert tok.decode(completion) == "<think>27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918.</think>918<|end|>"
    assert completion[-1] == tok.eos_token_id != tok.pad_token_id


def test_direct_answer_completion(tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer, think_prefill=None, with_traces=False)
    example = tokenize_for_sft(tiny_tokenizer, fmt, "What is 2 * 3?", None, "6")
    completion = [t for t, m in zip(example.input_ids, example.completion_mask) if m]
    assert tiny_tokenizer.decode(completion) == "6<|end|>"


def test_think_prefill_moves_the_open_tag_into_the_prompt(tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer, think_prefill=True)
    assert fmt.think_prefilled and fmt.render(tiny_tokenizer, "What is 2 * 3?").endswith(THINK_OPEN)
    example = tokenize_for_sft(tiny_tokenizer, fmt, "What is 2 * 3?", "2 * 3 = 6.", "6")
    prompt = [t for t, m in zip(example.input_ids, example.completion_mask) if not m]
    completion = [t for t, m in zip(example.input_ids, example.completion_mask) if m]
    assert tiny_tokenizer.decode(prompt).endswith(THINK_OPEN)
    assert tiny_tokenizer.decode(completion) == "2 * 3 = 6.</think>6<|end|>"


def test_template_that_opens_think_is_detected(tiny_tokenizer):
    tok = tiny_tokenizer
    original = tok.chat_template
    tok.chat_template = original + "{%- if add_generation_prompt -%}<think>{%- endif -%}"
    try:
        assert prompt_format(tok, think_prefill=None).think_prefilled
        with pytest.raises(FormatError, match="opens <think>"):
            prompt_format(tok, think_prefill=False)
        with pytest.raises(FormatError, match="direct-answer"):
            prompt_format(tok, think_prefill=None, with_traces=False)
    finally:
        tok.chat_template = original


def test_contract_refuses_a_trace_it_cannot_read_back(tiny_tokenizer):
    with pytest.raises(FormatError, match="format contract"):
        tokenize_for_sft(tiny_tokenizer, PromptFormat(False), "p", "a </think> b", "1")
