"""Reading the tool calls a model wrote, and running them.

Parsing: with a tokenizer that carries a response template (transformers' ``parse_response``, set by the
checkpoint or by TRL's ``add_response_schema`` for the chat templates it knows), that; otherwise the
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks of Qwen/Hermes-style templates, which
our tiny models' template writes too. A block that is there but cannot be read (malformed JSON, no name)
is still a call: a failed one, whose error the model reads.

Running: every call of a round (all completions of a batch) at once, sync functions in threads, async ones
together on one event loop, each within ``timeout`` seconds. Whatever goes wrong — an unknown tool, wrong
arguments, an exception, a hang, a result that is not text — becomes an error message to the model and a
failed call in the metrics; the step goes on.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from reasonkit.tools.toolbox import Session

TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
# Results of these types are written as text; anything else (dict, list, None, objects) is refused so
# that a tool's author sees it, rather than the model reading a Python repr.
TEXT_LIKE = (str, int, float, bool)


@dataclass(frozen=True)
class ToolCall:
    name: str  # "" when the call could not be read
    arguments: dict
    error: str | None = None  # why the call could not be read; it is not run


@dataclass(frozen=True)
class ToolResult:
    name: str
    content: str
    failed: bool


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The calls in one model turn, in order.

    >>> parse_tool_calls('<think>31*27</think><tool_call>{"name": "calculator", "arguments": {"expression": "31*27"}}</tool_call>')
    [ToolCall(name='calculator', arguments={'expression': '31*27'}, error=None)]
    >>> parse_tool_calls("no call here")
    []
    >>> parse_tool_calls('<tool_call>{"name": "calculator", "arguments": {"expr</tool_call>')[0].error
    'the tool call is not valid JSON: {"name": "calculator", "arguments": {"expr'
    """
    calls = []
    for block in TOOL_CALL.findall(text):
        block = block.strip()
        try:
            parsed = json.loads(block)
        except json.JSONDecodeError:
            calls.append(ToolCall("", {}, f"the tool call is not valid JSON: {block[:200]}"))
            continue
        calls.append(_call_from(parsed))
    return calls


def parse_with_template(
    tokenizer, completion_ids: list[int], prefix_ids: list[int], tools: list[dict]
) -> list[ToolCall]:
    """The calls transformers' ``parse_response`` reads in a turn, for tokenizers with a response template."""
    try:
        message = tokenizer.parse_response(completion_ids, prefix=prefix_ids, tools=tools)
    except TypeError:  # older signatures take the ids alone
        message = tokenizer.parse_response(completion_ids)
    except Exception as exc:
        return [ToolCall("", {}, f"the tool call could not be read: {exc}")]
    return [_call_from(call.get("function", call)) for call in message.get("tool_calls") or []]


def _call_from(parsed) -> ToolCall:
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        return ToolCall(
            "", {}, f'a tool call needs {{"name": ..., "arguments": {{...}}}}, got {str(parsed)[:200]}'
        )
    arguments = parsed.get("arguments", {})
    if isinstance(arguments, str):  # some templates write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return ToolCall(parsed["name"], {}, f"the arguments are not valid JSON: {arguments[:200]}")
    if not isinstance(arguments, dict):
        return ToolCall(parsed["name"], {}, f"the arguments must be an object, got {str(arguments)[:200]}")
    return ToolCall(parsed["name"], arguments)


class ToolRunner:
    """Runs rounds of calls: sync tools on a thread pool, async tools on an event loop of its own thread."""

    def __init__(self, timeout: float, max_result_chars: int, workers: int = 16):
        self.timeout, self.max_result_chars = timeout, max_result_chars
        self.threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tools")
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="tools-async", daemon=True).start()

    def run(self, calls: list[tuple[Session, ToolCall]]) -> list[ToolResult]:
        """The result of each call, in order; all of them run at once."""
        futures = [self._start(session, call) for session, call in calls]
        deadline = time.monotonic() + self.timeout + 1.0  # the round's calls run side by side
        return [self._finish(call, future, deadline) for (_, call), future in zip(calls, futures)]

    def _start(self, session: Session, call: ToolCall):
        if call.error is not None:
            return call.error
        tool = session.tools.get(call.name)
        if tool is None:
            return f"unknown tool {call.name!r}; the tools are: {', '.join(sorted(session.tools)) or 'none'}"
        if tool.is_async:
            coroutine = asyncio.wait_for(tool.function(**call.arguments), self.timeout)
            return asyncio.run_coroutine_threadsafe(_called(coroutine), self.loop)
        return self.threads.submit(tool.function, **call.arguments)

    def _finish(self, call: ToolCall, future, deadline: float) -> ToolResult:
        if isinstance(future, str):  # refused before it ran
            return ToolResult(call.name, f"Error: {future}", failed=True)
        try:
            value = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (FutureTimeout, asyncio.TimeoutError, TimeoutError):
            return ToolResult(
                call.name, f"Error: {call.name} took longer than {self.timeout:g} s", failed=True
            )
        except TypeError as exc:  # arguments that do not fit the signature, mostly
            return ToolResult(call.name, f"Error: {call.name}: {exc}", failed=True)
        except Exception as exc:
            return ToolResult(call.name, f"Error: {type(exc).__name__}: {exc}", failed=True)
        if not isinstance(value, TEXT_LIKE):
            return ToolResult(
                call.name, f"Error: {call.name} returned {type(value).__name__}, not text", failed=True
            )
        content = str(value)
        if len(content) > self.max_result_chars:
            content = content[: self.max_result_chars] + f"\n[cut at {self.max_result_chars} characters]"
        return ToolResult(call.name, content, failed=False)

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _called(coroutine):
    return await coroutine
