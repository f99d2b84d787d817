"""What the chat template says around tool turns, as token ids.

A multi-turn completion is built by concatenation (as TRL builds it): the model's own tokens as it
sampled them, then the tokens the template writes for the tool results and the next assistant header
(``tool_suffix_ids``), then the model's next turn. Nothing the model wrote is ever re-tokenised, so the
sequence trained on is the sequence sampled. That needs a template that renders a whole tool
conversation and renders a conversation's beginning as a prefix of the whole (``template_problems``).
"""

from __future__ import annotations

PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_tool_a8f3",
        "description": "A probe.",
        "parameters": {"type": "object", "properties": {"probe_arg_b9d4": {"type": "string"}}},
    },
}


def _call(name: str, arguments: dict | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments or {}}}


def _ids(rendered) -> list[int]:
    return list(
        rendered["input_ids"] if isinstance(rendered, dict) or hasattr(rendered, "keys") else rendered
    )


def tool_suffix_ids(tokenizer, tool_messages: list[dict]) -> list[int]:
    """The ids the template writes after an assistant turn that called tools (ended by its EOS): the
    ``tool_messages`` (``{"role": "tool", "name", "content"}``), then the next assistant header.

    Read off a dummy conversation rendered with and without them, cut after the assistant turn's EOS
    (templates such as Qwen's write a newline after it, which belongs to the suffix)."""
    head = [
        {"role": "user", "content": "dummy"},
        # the real name: some templates write the result's header from the call's name
        {"role": "assistant", "content": "", "tool_calls": [_call(tool_messages[0]["name"])]},
    ]
    prefix = _ids(tokenizer.apply_chat_template(head, tokenize=True, add_generation_prompt=False))
    full = _ids(
        tokenizer.apply_chat_template(head + tool_messages, tokenize=True, add_generation_prompt=True)
    )
    ends = [i for i, token in enumerate(prefix) if token == tokenizer.eos_token_id]
    if ends:
        prefix = prefix[: ends[-1] + 1]
    if full[: len(prefix)] != prefix:
        raise ValueError("the chat template does not render a conversation's beginning as a prefix of it")
    return full[len(prefix) :]


def template_problems(tokenizer) -> list[str]:
    """Why this tokenizer's chat template cannot run tool turns (empty: it can)."""
    if tokenizer.chat_template is None:
        return ["the tokenizer has no chat template; tools need one that renders tool calls and results"]
    messages = [
        {"role": "user", "content": "probe"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_call("probe_tool_a8f3", {"probe_arg_b9d4": "probe_value_d6e7"})],
        },
        {"role": "tool", "name": "probe_tool_a8f3", "content": "probe_result_c4f9"},
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tools=[PROBE_TOOL], tokenize=False)
        tool_suffix_ids(tokenizer, messages[2:])
    except Exception as exc:
        return [f"the chat template cannot render a tool conversation: {exc}"]
    missing = [
        what
        for what, sentinel in [
            ("the tool call's name", "probe_tool_a8f3"),
            ("its arguments", "probe_value_d6e7"),
            ("the tool's result", "probe_result_c4f9"),
        ]
        if sentinel not in text
    ]
    if missing:
        return [
            f"the chat template leaves out {', '.join(missing)} of a tool conversation: use a template that "
            "renders assistant tool_calls and tool messages (Qwen2.5/3, Llama 3.1+, Hermes): save the "
            "tokenizer with one"
        ]
    return []


def conversation_ids(
    tokenizer, messages: list[dict], tools: list | None = None
) -> tuple[list[int], list[int]]:
    """A conversation with tool turns as token ids, and the mask of what trains (1: the assistant's turns,
    their EOS included; 0: the prompt, the tool results and the template's tokens around them).

    Built as rollouts build it: the prompt (everything before the first assistant turn, with the
    generation prompt), then each assistant turn tokenized on its own, each run of tool results as
    ``tool_suffix_ids``. The ids are those the tool loop would produce had the model written these turns.
    """
    first = next((k for k, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first is None:
        raise ValueError("the conversation has no assistant turn to train on")
    head = messages[:first]
    ids = _ids(tokenizer.apply_chat_template(head, tools=tools, tokenize=True, add_generation_prompt=True))
    mask = [0] * len(ids)
    k = first
    while k < len(messages):
        message = messages[k]
        if message["role"] == "assistant":
            before = tokenizer.apply_chat_template(
                messages[:k], tools=tools, tokenize=False, add_generation_prompt=True
            )
            after = tokenizer.apply_chat_template(messages[: k + 1], tools=tools, tokenize=False)
            if not after.startswith(before):
                raise ValueError(
                    "the chat template does not render a conversation's beginning as a prefix of it"
                )
            turn = after[len(before) :]
            turn = (
                turn[: turn.rindex(tokenizer.eos_token) + len(tokenizer.eos_token)]
                if tokenizer.eos_token in turn
                else turn
            )
            turn_ids = tokenizer(turn, add_special_tokens=False)["input_ids"]
            ids, mask, k = ids + turn_ids, mask + [1] * len(turn_ids), k + 1
        elif message["role"] == "tool":
            results = []
            while k < len(messages) and messages[k]["role"] == "tool":
                results.append(messages[k])
                k += 1
            suffix = tool_suffix_ids(tokenizer, results)
            ids, mask = ids + suffix, mask + [0] * len(suffix)
        else:
            raise ValueError(
                f"a {message['role']!r} turn after the first assistant turn: only assistant and tool turns may follow it"
            )
    return ids, mask
