"""Log-probs of completion tokens under the trainer's model: how sequences are laid out for a forward
pass, and the LM head run in chunks so memory does not grow with the vocabulary.

Layouts (``LAYOUTS``), chosen for the attention kernel the model has:
- ``packed``: the micro-batch's sequences concatenated into one row, ``position_ids`` restarting at 0
  for each, no attention mask; transformers then attends within each sequence. ``use_cache`` must be
  off: with a cache object present the packed layout is not detected and sequences would attend to
  each other. No padding at all, but only a varlen kernel (flash-attention) makes the attention cost
  the sum of each sequence's square; others (sdpa, eager) run a block-diagonal mask over the whole
  row, the square of the row.
- ``padded``: one right-padded row per sequence, sequences grouped by length so rows in a micro-batch
  are close in length and little is padded. What every kernel runs fast.

The LM head: the backbone's last hidden states are taken at the positions that predict completion
tokens (a hook on the output embeddings stops the model's own head from projecting anything), then
projected ``chunk_tokens`` positions at a time. Each chunk's logits live only while that chunk is
computed: its log-probs are recomputed in the backward pass (activation checkpointing), so the peak is
one chunk's ``[chunk_tokens, V]``, not ``[tokens, V]``, and gradients are those of the whole-vocabulary
computation. The entropy and the truncated distribution (no gradient) are taken in the same chunk.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.checkpoint import checkpoint

LAYOUTS = ("packed", "padded")
# Logit values per LM-head chunk (64M: 256 MiB in float32). Qwen's 151,936-token vocabulary gives chunks of
# 441 positions; a small vocabulary fits a whole micro-batch in one chunk, computed without a recompute.
CHUNK_LOGITS = 1 << 26


@dataclass
class CompletionLogprobs:
    logprobs: list[torch.Tensor]  # per sequence, [C_i]: log-prob of each completion token
    entropy: list[torch.Tensor]  # per sequence, [C_i]: entropy of the distribution drawn from (no grad)
    # per sequence, [C_i]: the trainer's log-probs under the sampler's truncation (see ``truncation``)
    truncated_logprobs: list[torch.Tensor] | None = None


def token_budget_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Split sequence indices, in order, into packed micro-batches of at most ``budget`` tokens.

    A sequence longer than the budget gets a micro-batch of its own rather than being cut.

    >>> token_budget_batches([3, 4, 2, 9, 1], budget=7)
    [[0, 1], [2], [3], [4]]
    """
    batches, current, used = [], [], 0
    for index, length in enumerate(lengths):
        if current and used + length > budget:
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        batches.append(current)
    return batches


def length_grouped_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Sequence indices, longest first, in padded micro-batches of at most ``budget`` tokens counting the
    padding (rows x the longest row). Sorting first keeps each micro-batch's rows close in length.

    >>> length_grouped_batches([3, 9, 2, 8, 4], budget=18)
    [[1, 3], [4, 0, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current = [], []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * longest > budget:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def micro_batches(lengths: list[int], budget: int, layout: str) -> list[list[int]]:
    """The micro-batches a layout runs, each within ``budget`` tokens (padding included)."""
    return (
        token_budget_batches(lengths, budget)
        if layout == "packed"
        else length_grouped_batches(lengths, budget)
    )


def micro_batch_shape(
    layout: str,
    token_budget: int | None,
    attn_implementation: str,
    device_type: str,
    hidden_size: int,
    vocab_size: int = 0,
) -> tuple[str, int]:
    """The layout and token budget a recipe's ``auto`` and ``null`` mean for the model's attention kernel,
    its width, its vocabulary and the device.

    >>> micro_batch_shape("auto", None, "sdpa", "cpu", 512), micro_batch_shape("auto", None, "sdpa", "cuda", 512)
    (('padded', 512), ('padded', 8192))
    >>> micro_batch_shape("auto", None, "sdpa", "cpu", 896, 151_936)  # Qwen2.5-0.5B
    ('padded', 1187)
    >>> micro_batch_shape("auto", None, "flash_attention_2", "cuda", 4096)
    ('packed', 16384)
    """
    varlen = attn_implementation == "flash_attention_2"
    if layout == "auto":
        layout = "packed" if varlen else "padded"
    if token_budget is None:
        if layout == "packed":
            # without a varlen kernel a packed row's attention costs the square of the row: keep rows short
            token_budget = 16384 if varlen else 1024
        else:
            # On a CPU activations that fit its caches run fastest. Measured on 2 cores, GRPO steps: hidden
            # 512, 512 tokens 9% faster than 1024 and 25% faster than 4096; hidden 128, 2048 tokens 9%
            # faster than 512 and 2x faster than 8192. But each micro-batch also pays for whole [V, H]
            # gradients of the LM head and the embedding: at Qwen2.5's 151,936-token vocabulary and
            # hidden 896, 1,024 tokens made the optimisation phase 18% faster than 292.
            cpu_budget = max(256, (1 << 18) // hidden_size, vocab_size // 128)
            token_budget = cpu_budget if device_type == "cpu" else 8192
    return layout, token_budget


def truncate_logits(logits: torch.Tensor, top_p: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """Tokens outside the top-k and the top-p nucleus set to -inf (the most likely token always stays)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)  # mass above each token
        drop = (before > top_p).scatter(-1, order, before > top_p)
        logits = logits.masked_fill(drop, -torch.inf)
    return logits


def completion_logprobs(
    model,
    sequences: list[tuple[list[int], list[int]]],
    temperature: float = 1.0,
    *,
    layout: str = "packed",
    with_entropy: bool = False,
    truncation: tuple[float, int] | None = None,
    chunk_logits: int = CHUNK_LOGITS,
) -> CompletionLogprobs:
    """Log-probs of each completion token given its prompt, for ``(prompt_ids, completion_ids)`` pairs.

    Logits are divided by ``temperature`` first. With ``truncation=(top_p, top_k)`` the result also holds,
    without gradient, the trainer's log-probs of the truncated distribution the sampler drew from (what
    vLLM reports for its own), to compare with the sampler's; -inf where a token falls outside it here.
    """
    head = output_embeddings(model)
    hidden = _completion_hidden_states(model, head, sequences, layout)  # [sum C_i, H]
    return logprobs_from_hidden_states(
        head,
        hidden,
        [c for _, c in sequences],
        temperature,
        with_entropy=with_entropy,
        truncation=truncation,
        chunk_logits=chunk_logits,
    )


def logprobs_from_hidden_states(
    head,
    hidden: torch.Tensor,  # [sum C_i, H]: the states that predict each completion token, in order
    completions: list[list[int]],
    temperature: float,
    *,
    with_entropy: bool = False,
    truncation: tuple[float, int] | None = None,
    chunk_logits: int = CHUNK_LOGITS,
) -> CompletionLogprobs:
    """``completion_logprobs`` from the last hidden states, however the forward pass laid the sequences out:
    the LM head in chunks (see the module docstring)."""
    targets = torch.tensor([t for c in completions for t in c], device=hidden.device)  # [sum C_i]
    chunk_tokens = max(1, chunk_logits // head.out_features)  # (the weight's shape is [0] under ZeRO-3)
    extras: dict[int, tuple] = {}  # per chunk: (entropy, truncated log-probs), computed once

    def chunk_logprobs(start: int, chunk_hidden: torch.Tensor) -> torch.Tensor:
        logits = head(chunk_hidden).float() / temperature  # [chunk, V]
        log_softmax = logits.log_softmax(-1)
        chunk_targets = targets[start : start + chunk_hidden.shape[0], None]
        if start not in extras:  # not again when the backward pass recomputes the chunk
            extras[start] = _without_gradient(logits, log_softmax, chunk_targets, with_entropy, truncation)
        return log_softmax.gather(-1, chunk_targets).squeeze(-1)

    if hidden.shape[0] <= chunk_tokens:  # one chunk: nothing to gain from recomputing it
        token_logprobs = chunk_logprobs(0, hidden)
    else:
        token_logprobs = torch.cat(
            [
                checkpoint(chunk_logprobs, start, hidden[start : start + chunk_tokens], use_reentrant=False)
                for start in range(0, hidden.shape[0], chunk_tokens)
            ]
        )
    sizes = [len(c) for c in completions]
    entropy = [e for e, _ in extras.values()]
    truncated = [t for _, t in extras.values()]
    return CompletionLogprobs(
        list(token_logprobs.split(sizes)),
        list(torch.cat(entropy).split(sizes)) if with_entropy else [],
        list(torch.cat(truncated).split(sizes)) if truncation is not None else None,
    )


@torch.no_grad()
def _without_gradient(logits, log_softmax, targets, with_entropy: bool, truncation):
    entropy = -(log_softmax.exp() * log_softmax).sum(-1) if with_entropy else None
    truncated = None
    if truncation is not None:
        top_p, top_k = truncation
        if top_p >= 1.0 and top_k == 0:  # nothing truncated: the sampler's distribution is this one
            truncated = log_softmax.gather(-1, targets).squeeze(-1)
        else:
            truncated = truncate_logits(logits, top_p, top_k).log_softmax(-1).gather(-1, targets).squeeze(-1)
    return entropy, truncated


def output_embeddings(model):
    """The LM head, through DDP's and DeepSpeed's wrappers (``module``); peft's forwards the call."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module
    return model.get_output_embeddings()


@contextlib.contextmanager
def head_inputs(head):
    """While open, each call of ``head`` appends its input (the last hidden states) to the yielded list and
    gets an empty one back, so the model's own projection costs nothing."""
    captured = []

    def take_hidden_states(module, args):
        captured.append(args[0])
        return (args[0][..., :0, :],)

    hook = head.register_forward_pre_hook(take_hidden_states)
    try:
        yield captured
    finally:
        hook.remove()


def _completion_hidden_states(model, head, sequences, layout: str) -> torch.Tensor:
    """The last hidden states at the positions that predict completion tokens, in order: ``[sum C_i, H]``.

    The model runs its whole forward (so DDP and DeepSpeed see the call they wrap); ``head_inputs`` takes
    the head's input."""
    device = next(model.parameters()).device
    with head_inputs(head) as captured:
        if layout == "packed":
            inputs, keep = _packed_inputs(sequences, device)
            model(**inputs, use_cache=False, logits_to_keep=keep)
            return captured[0][0]  # [sum C_i, H]: logits_to_keep took the positions
        inputs, rows, columns = _padded_inputs(sequences, device)
        model(**inputs, use_cache=False)
        return captured[0][rows, columns]


def _packed_inputs(sequences, device):
    input_ids, position_ids, keep, offset = [], [], [], 0
    for prompt_ids, completion_ids in sequences:
        ids = prompt_ids + completion_ids
        input_ids += ids
        position_ids += range(len(ids))
        # the hidden state at position p predicts token p + 1: keep those that predict completion tokens
        first = offset + len(prompt_ids) - 1
        keep += range(first, first + len(completion_ids))
        offset += len(ids)
    inputs = {
        "input_ids": torch.tensor([input_ids], device=device),
        "position_ids": torch.tensor([position_ids], device=device),
    }
    return inputs, torch.tensor(keep, device=device)


def _padded_inputs(sequences, device):
    rows = [torch.tensor(p + c) for p, c in sequences]
    input_ids = pad_sequence(rows, batch_first=True, padding_value=0)  # [R, L], right-padded
    attention_mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
    row_index, column_index = [], []
    for row, (prompt_ids, completion_ids) in enumerate(sequences):
        first = len(prompt_ids) - 1
        row_index += [row] * len(completion_ids)
        column_index += range(first, first + len(completion_ids))
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    return inputs, torch.tensor(row_index, device=device), torch.tensor(column_index, device=device)
