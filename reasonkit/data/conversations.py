"""Conversations with tool turns, for distillation with tools: rows of a messages column, OpenAI/TRL style.

A conversation is the prompt (system and user turns), then the assistant's turns, each of which may call
tools (``tool_calls``: ``{"type": "function", "function": {"name", "arguments"}}``), each run of calls
answered by ``tool`` messages, and ends with the assistant's answer (a turn without calls). Trained on
the assistant's turns only (``tools.template.conversation_ids``: built as the tool loop builds a
completion, so the ids trained on are those generation produces); the prompt and the tool results are
attended, never trained. The completion as evaluation reads it (tool results included) must follow the
format contract: a think block, then the answer.

``datasets`` gives every row of a file the union of all rows' keys, filling absent ones with null (a
message without ``tool_calls``, a call without another tool's argument): nulls are dropped on reading.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from reasonkit.config import DataConfig
from reasonkit.data.chat import FormatError, FormattedExample, PromptFormat
from reasonkit.data.traces import DataError, LoadReport, load_rows, report_unusable, split_source
from reasonkit.tasks.arithmetic import arithmetic_splits
from reasonkit.tools.template import conversation_ids
from rewards.contract import parse_completion

ROLES = ("system", "user", "assistant", "tool")
DEFAULT_COLUMN = "messages"


@dataclass(frozen=True)
class Conversation:
    index: int  # the row's number in the dataset (0-based, in file order)
    messages: list[dict]
    row: dict  # the row's other columns: an environment's reset and the `environment` column read them


def load_conversations(data: DataConfig, split: str) -> tuple[list[Conversation], LoadReport]:
    """The conversations of ``split`` (its ``messages_column``, default ``messages``), unusable rows
    reported by number as ``data.on_invalid`` says."""
    if (
        data.task is not None and getattr(data, split, None) is None
    ):  # the task's teacher calls the calculator
        problems = arithmetic_splits(**asdict(data.arithmetic))[split]
        conversations = [
            Conversation(i, p.tool_conversation(), {"prompt": p.prompt, "answer": p.answer})
            for i, p in enumerate(problems)
        ]
        return conversations, LoadReport(rows=len(problems), skipped=0)
    source = split_source(data, split)
    column = source.messages_column or DEFAULT_COLUMN
    rows = load_rows(source)
    if rows and column not in rows[0]:
        raise DataError(
            f"dataset {source.path!r} has no conversation column {column!r}; it has {sorted(rows[0])}. "
            f"Set data.{split}.messages_column in the recipe."
        )
    conversations, bad_rows = [], []
    for index, row in enumerate(rows):
        messages = without_nulls(row[column])
        problem = conversation_problem(messages)
        if problem:
            bad_rows.append((index, problem))
            continue
        conversations.append(Conversation(index, messages, {k: v for k, v in row.items() if k != column}))
    report_unusable(source, bad_rows, len(rows), data.on_invalid)
    return conversations, LoadReport(rows=len(rows), skipped=len(bad_rows))


def without_nulls(messages):
    """The messages without the nulls ``datasets`` filled in, and arguments written as JSON read as objects
    (the tool loop records them as objects; templates write them with ``tojson``)."""
    if not isinstance(messages, list):
        return messages
    cleaned = []
    for message in messages:
        if not isinstance(message, dict):
            return messages  # conversation_problem says what is wrong
        message = {k: v for k, v in message.items() if v is not None}
        if message.get("tool_calls"):
            message["tool_calls"] = [_call_without_nulls(call) for call in message["tool_calls"]]
        cleaned.append(message)
    return cleaned


def _call_without_nulls(call):
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return call
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return call  # conversation_problem says so
    if isinstance(arguments, dict):
        arguments = {k: v for k, v in arguments.items() if v is not None}
    return {"type": "function", "function": {**function, "arguments": arguments}}


def conversation_problem(messages) -> str | None:
    """Why a conversation cannot be trained on, or None.

    >>> conversation_problem([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>x</think>4"}])
    >>> conversation_problem([{"role": "user", "content": "2+2?"}])
    'no assistant turn'
    >>> conversation_problem([{"role": "user", "content": "2+2?"}, {"role": "assistant", "tool_calls": [
    ...     {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2+2"}}}]}])
    'the last turn calls tools; a conversation ends with the answer'
    """
    if not isinstance(messages, list) or not messages:
        return "no messages"
    if not all(isinstance(m, dict) and m.get("role") in ROLES for m in messages):
        return f"a message without a role among {list(ROLES)}"
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        return "no assistant turn"
    if messages[-1]["role"] != "assistant":
        return f"the last turn is {roles[-1]!r}; a conversation ends with the assistant's answer"
    if messages[-1].get("tool_calls"):
        return "the last turn calls tools; a conversation ends with the answer"
    first = roles.index("assistant")
    if any(role in ("system", "user") for role in roles[first:]):
        return "a user or system turn after the first assistant turn; one question per conversation"
    for k, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return (
                    f'message {k}: a tool call is {{"type": "function", "function": {{"name", "arguments"}}}}'
                )
            if not isinstance(function.get("arguments", {}), dict):
                return (
                    f"message {k}: the arguments of {function['name']!r} are not an object (nor JSON of one)"
                )
        if message["role"] == "tool" and (
            k == 0 or not (roles[k - 1] == "tool" or messages[k - 1].get("tool_calls"))
        ):
            return f"message {k}: a tool result that answers no tool call"
    return None


def tokenize_conversation(
    tokenizer, fmt: PromptFormat, messages: list[dict], tools: list[dict], require_think: bool = True
) -> FormattedExample:
    """The conversation's ids, 1 in the mask on the assistant's turns; refused (FormatError) when the
    template cannot render it by turns or the format contract reads no answer out of its completion."""
    try:
        ids, mask = conversation_ids(tokenizer, messages, tools)
    except ValueError as exc:
        raise FormatError(f"the chat template cannot render this conversation turn by turn: {exc}") from None
    start = mask.index(1)
    # The completion as evaluation reads it: the model's turns and the tool results between them.
    completion = tokenizer.decode(ids[start:], skip_special_tokens=True)
    parsed = parse_completion(completion, think_prefilled=fmt.think_prefilled, require_think=require_think)
    if not parsed.answer or (require_think and parsed.trace is None):
        raise FormatError(
            f"the format contract reads no answer out of this conversation's completion: {completion[-300:]!r}; "
            "its turns must write one think block (tool calls inside it), then the answer"
        )
    return FormattedExample(ids, mask)
