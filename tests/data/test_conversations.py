"""Conversations with tool turns for distillation: reading them from a file, and their ids and mask."""

import json

import pytest

from reasonkit.config import DataConfig, DatasetSource
from reasonkit.data import DataError, PromptFormat, load_examples
from reasonkit.data.chat import FormatError
from reasonkit.data.conversations import load_conversations, tokenize_conversation
from reasonkit.models import train_tiny_tokenizer
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.toolbox import Toolbox
from tests.helpers.tool_model import CONVERSATIONS, call


def jsonl(tmp_path, rows):
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(path, on_invalid="error", **columns) -> DataConfig:
    return DataConfig(train=DatasetSource(path=str(path), **columns), on_invalid=on_invalid)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [str(m.get("content")) for messages in CONVERSATIONS.values() for m in messages]
    return train_tiny_tokenizer([*texts, json.dumps(call("27*31")), "tools: calculator(expression)"])


def test_conversations_are_read_as_written_though_datasets_fills_absent_keys_with_null(tmp_path):
    # one call's arguments written as a JSON string, another tool's argument absent from this row's calls
    python_call = {"type": "function", "function": {"name": "python", "arguments": {"code": "print(1)"}}}
    as_string = {
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "27*31"}'},
    }
    rows = [
        {"messages": CONVERSATIONS["27*31?"], "level": "easy"},
        {"messages": [*CONVERSATIONS["27*31?"][:1], {"role": "assistant", "content": "<think>", "tool_calls": [as_string]},
                      *CONVERSATIONS["27*31?"][2:]], "level": "easy"},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<think>", "tool_calls": [python_call]},
                      {"role": "tool", "name": "python", "content": "1"}, {"role": "assistant", "content": "</think>1"}], "level": "hard"},
    ]  # fmt: skip
    conversations, report = load_conversations(config(jsonl(tmp_path, rows)), "train")
    assert report.rows == 3 and report.skipped == 0
    assert conversations[0].messages == CONVERSATIONS["27*31?"]
    assert conversations[1].messages == CONVERSATIONS["27*31?"]  # the JSON string read as an object
    assert conversations[2].messages[1]["tool_calls"][0]["function"]["arguments"] == {"code": "print(1)"}
    assert [c.row for c in conversations] == [{"level": "easy"}, {"level": "easy"}, {"level": "hard"}]


@pytest.mark.parametrize(
    "messages, why",
    [
        ([{"role": "user", "content": "2+2?"}], "no assistant turn"),
        (CONVERSATIONS["27*31?"][:3], "the last turn is 'tool'"),
        (CONVERSATIONS["27*31?"][:2], "the last turn calls tools"),
        ([{"role": "user", "content": "q"}, {"role": "tool", "content": "1"}, {"role": "assistant", "content": "a"}],
         "message 1: a tool result that answers no tool call"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {}}}]},
          {"role": "tool", "content": "1"}, {"role": "assistant", "content": "a"}], "message 1: a tool call is"),
        ([{"role": "robot", "content": "q"}], "a message without a role"),
        ([*CONVERSATIONS["no tool: 2+2?"], *CONVERSATIONS["no tool: 2+2?"]], "a user or system turn after the first"),
        ([{"role": "tool", "content": "1"}, *CONVERSATIONS["no tool: 2+2?"]], "message 0: a tool result that answers no"),
        ("not a list", "no messages"),
    ],
)  # fmt: skip
def test_unusable_conversations_are_reported_by_row_and_skipped_when_asked(tmp_path, messages, why):
    rows = [{"messages": CONVERSATIONS["27*31?"]}, {"messages": messages}]
    with pytest.raises(DataError, match=rf"1 of 2 rows are unusable: row 1 \({why}"):
        load_conversations(config(jsonl(tmp_path, rows)), "train")
    conversations, report = load_conversations(config(jsonl(tmp_path, rows), "skip"), "train")
    assert len(conversations) == 1 and report.skipped == 1


def test_a_dataset_without_the_messages_column_names_the_setting(tmp_path):
    path = jsonl(tmp_path, [{"question": "q", "reply": "a"}])
    with pytest.raises(
        DataError,
        match=r"no conversation column 'messages'; it has \['question', 'reply'\]. Set data.train.messages_column",
    ):
        load_conversations(config(path), "train")


def test_the_arithmetic_tasks_teacher_calls_the_calculator_for_the_product():
    data = DataConfig(task="arithmetic")
    data.arithmetic.test_size = 10
    conversations, report = load_conversations(data, "test")
    assert report.rows == len(conversations) == 10
    first = conversations[0]
    assert first.messages[0]["content"] == first.row["prompt"]
    assert first.messages[2] == {"role": "tool", "name": "calculator", "content": first.row["answer"]}
    a, b = (
        int(x) for x in first.messages[1]["tool_calls"][0]["function"]["arguments"]["expression"].split(" * ")
    )
    assert str(a * b) == first.row["answer"] and first.messages[-1]["content"] == f"</think>{a * b}"


def test_only_the_assistant_turns_are_trained_and_the_completion_reads_as_evaluation_reads_it(tokenizer):
    messages = CONVERSATIONS["two calls: 12*12?"]
    schemas = Toolbox(ToolSettings(functions=["calculator"])).schemas()
    example = tokenize_conversation(tokenizer, PromptFormat(think_prefilled=False), messages, schemas)
    ids, mask = example.input_ids, example.completion_mask
    trained = [i for i, m in zip(ids, mask) if m]
    spans, start = [], None  # the runs of trained tokens, decoded
    for k, m in enumerate([*mask, 0]):
        if m and start is None:
            start = k
        if not m and start is not None:
            spans.append(tokenizer.decode(ids[start:k]))
            start = None
    assert spans == [
        '<think><tool_call>{"name": "calculator", "arguments": {"expression": "12*10"}}</tool_call><|end|>',
        '<tool_call>{"name": "calculator", "arguments": {"expression": "120+24"}}</tool_call><|end|>',
        "</think>144<|end|>",
    ]
    assert trained.count(tokenizer.eos_token_id) == 3  # every turn ends with its EOS, trained
    prompt = tokenizer.decode(ids[: mask.index(1)])
    assert (
        prompt
        == "<|system|>tools: calculator(expression)<|end|><|user|>two calls: 12*12?<|end|><|assistant|>"
    )
    masked_after_prompt = tokenizer.decode(
        [i for k, (i, m) in enumerate(zip(ids, mask)) if not m and k > mask.index(1)]
    )
    assert masked_after_prompt == (
        "<|user|><tool_response>120</tool_response><|end|><|assistant|>"
        "<|user|><tool_response>144</tool_response><|end|><|assistant|>"
    )
    # the ids are those of the whole conversation as the template renders it
    rendered = tokenizer.apply_chat_template(messages, tools=schemas, tokenize=False)
    assert tokenizer.decode(ids) == rendered


def test_a_conversation_whose_completion_has_no_answer_is_refused(tokenizer):
    no_think = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    with pytest.raises(FormatError, match="reads no answer"):
        tokenize_conversation(tokenizer, PromptFormat(think_prefilled=False), no_think, [])
    # a direct-answer stage (traces: false) takes it
    example = tokenize_conversation(
        tokenizer, PromptFormat(think_prefilled=False), no_think, [], require_think=False
    )
    assert (
        tokenizer.decode([i for i, m in zip(example.input_ids, example.completion_mask) if m]) == "4<|end|>"
    )


def test_read_as_a_trace_a_conversation_with_tool_turns_says_which_stage_trains_on_it(tmp_path):
    path = jsonl(
        tmp_path, [{"messages": CONVERSATIONS["no tool: 2+2?"]}, {"messages": CONVERSATIONS["27*31?"]}]
    )
    with pytest.raises(
        DataError,
        match=r"row 1 \(empty answer: a conversation with tool turns, which an sft stage with `tools` trains on\)",
    ):
        load_examples(config(path, messages_column="messages"), "train", need_trace=True)
