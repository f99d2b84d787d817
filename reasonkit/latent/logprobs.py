"""Log-probs of completion tokens after a latent model's thoughts: what GRPO trains a latent model with.

Glossary: B sequences, P the longest prompt (thoughts included), C the longest completion, H hidden size.

The thoughts are a deterministic function of the prompt and the weights, so the text sampled after them
is an ordinary policy: its log-probs are ``completion_logprobs``'s, with the thoughts run as
``LatentEngine`` ran them. A sequence's prompt ids are what the engine put in its rollout: the prompt,
``<|bot|>``, one ``<|latent|>`` placeholder per thought, ``<|eot|>``. Prompts are left-padded so every
``<|bot|>`` sits in one column (``chain_forward``'s layout) and completions right-padded: one padded
layout, whatever the recipe's ``micro_batch_layout``. Nothing is detached: the gradient of a completion
token's log-prob reaches the weights through every thought of the chain.
"""

from __future__ import annotations

import functools

import torch

from reasonkit.grpo.logprobs import (
    CHUNK_LOGITS,
    CompletionLogprobs,
    head_inputs,
    logprobs_from_hidden_states,
    output_embeddings,
)
from reasonkit.latent.engine import LatentSettings
from reasonkit.latent.thoughts import chain_forward


def latent_logprobs(settings: LatentSettings):
    """``completion_logprobs`` for a model that thinks as ``settings`` say (same signature)."""
    return functools.partial(latent_completion_logprobs, settings=settings)


def latent_completion_logprobs(
    model,
    sequences: list[tuple[list[int], list[int]]],
    temperature: float = 1.0,
    *,
    settings: LatentSettings,
    layout: str = "padded",  # unused: the chain has its own layout (the module docstring)
    with_entropy: bool = False,
    truncation: tuple[float, int] | None = None,
    chunk_logits: int = CHUNK_LOGITS,
) -> CompletionLogprobs:
    """Log-probs of each completion token given its prompt and the thoughts the chain computes from it,
    for ``(prompt_ids, completion_ids)`` pairs whose prompts end with ``<|bot|>``, the thoughts' placeholders
    and ``<|eot|>``. The rest as ``completion_logprobs``."""
    device = next(model.parameters()).device
    input_ids, attention_mask, thought_mask, bot, rows, columns = _chain_inputs(sequences, settings.thoughts)
    head = output_embeddings(model)
    with head_inputs(head) as captured:  # one [B, columns, H] per forward pass of the chain
        chain_forward(
            model,
            input_ids.to(device),
            attention_mask.to(device),
            thought_mask.to(device),
            bot,
            feedback=settings.feedback,
            normalise=settings.normalise,
        )
    hidden = torch.cat(captured, dim=1)[rows.to(device), columns.to(device)]  # [sum C_i, H]
    return logprobs_from_hidden_states(
        head,
        hidden,
        [c for _, c in sequences],
        temperature,
        with_entropy=with_entropy,
        truncation=truncation,
        chunk_logits=chunk_logits,
    )


def _chain_inputs(sequences, thoughts: int):
    """Left-padded prompts, right-padded completions ([B, P + C] each), the thought columns, the column of
    <|bot|>, and (row, column) of each hidden state that predicts a completion token."""
    P = max(len(p) for p, _ in sequences)
    C = max(len(c) for _, c in sequences)
    input_ids = torch.zeros(len(sequences), P + C, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    rows, columns = [], []
    for row, (prompt_ids, completion_ids) in enumerate(sequences):
        ids = prompt_ids + completion_ids
        start = P - len(prompt_ids)
        input_ids[row, start : start + len(ids)] = torch.tensor(ids)
        attention_mask[row, start : start + len(ids)] = 1
        # the hidden state at column p predicts the token at p + 1; <|eot|>'s predicts the first
        rows += [row] * len(completion_ids)
        columns += range(P - 1, P - 1 + len(completion_ids))
    bot = P - thoughts - 2  # every prompt ends with <|bot|>, the thoughts, <|eot|>
    thought_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    thought_mask[:, bot + 1 : bot + 1 + thoughts] = True
    return input_ids, attention_mask, thought_mask, bot, torch.tensor(rows), torch.tensor(columns)
