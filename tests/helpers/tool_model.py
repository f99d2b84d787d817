"""A tiny model that has learnt, by heart, to call the calculator: the tool loop's tests need a real model
(on every engine) whose turns are known in advance.

Each conversation below is trained to the point where greedy decoding writes it back token for token.
"""

from __future__ import annotations

import torch

from reasonkit.models import build_tiny_model, train_tiny_tokenizer
from reasonkit.tools.builtin import calculator
from reasonkit.tools.template import conversation_ids


def call(expression: str) -> dict:
    return {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}


def one_call(question: str, expression: str, result: str) -> list[dict]:
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<think>", "tool_calls": [call(expression)]},
        {"role": "tool", "name": "calculator", "content": result},
        {"role": "assistant", "content": f"</think>{result}"},
    ]


# What the model answers to each prompt (greedy), turn by turn.
CONVERSATIONS = {
    "27*31?": one_call("27*31?", "27*31", "837"),
    "two calls: 12*12?": [
        {"role": "user", "content": "two calls: 12*12?"},
        {"role": "assistant", "content": "<think>", "tool_calls": [call("12*10")]},
        {"role": "tool", "name": "calculator", "content": "120"},
        {"role": "assistant", "content": "", "tool_calls": [call("120+24")]},
        {"role": "tool", "name": "calculator", "content": "144"},
        {"role": "assistant", "content": "</think>144"},
    ],
    "no tool: 2+2?": [
        {"role": "user", "content": "no tool: 2+2?"},
        {"role": "assistant", "content": "<think>2+2</think>4"},
    ],
}
# A call the model writes as broken JSON (it then answers anyway).
BROKEN = "broken: 9*9?"
BROKEN_TURN = '<think><tool_call>{"name": "calculator", "arguments": {"expression": "9*9"</tool_call>'
TOOLS = [calculator]


def training_sequences(tokenizer) -> list[list[int]]:
    sequences = [conversation_ids(tokenizer, messages, TOOLS)[0] for messages in CONVERSATIONS.values()]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": BROKEN}], tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    broken = tokenizer(prompt + BROKEN_TURN + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return [*sequences, broken]


def save_tool_model(directory, steps: int = 150) -> None:
    corpus = [tokenizer_text for messages in CONVERSATIONS.values() for tokenizer_text in _texts(messages)]
    tokenizer = train_tiny_tokenizer([*corpus, BROKEN, BROKEN_TURN, "tools: calculator(expression)"])
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    sequences = training_sequences(tokenizer)
    width = max(len(ids) for ids in sequences)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in sequences])
    labels = torch.tensor([ids + [-100] * (width - len(ids)) for ids in sequences])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):  # the whole set each step: by heart
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _texts(messages: list[dict]) -> list[str]:
    texts = []
    for message in messages:
        texts.append(message["content"])
        for tool_call in message.get("tool_calls", []):
            texts.append(
                f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{tool_call["function"]["arguments"]["expression"]}"}}}}</tool_call>'
            )
    return texts
