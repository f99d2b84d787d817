"""Padding-free log-probs: sequences packed into one row, each attending only to itself.

Sequences are concatenated into a single row with ``position_ids`` that restart at 0 for each one and
no attention mask; transformers then builds per-sequence (block-diagonal) attention. ``use_cache`` must
be off: with a cache object present the packed layout is not detected and sequences would attend to
each other. Only completion positions go through the LM head (``logits_to_keep``), so the vocabulary
projection costs nothing for prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedLogprobs:
    logprobs: list[torch.Tensor]  # per sequence, [C_i]: log-prob of each completion token
    entropy: list[torch.Tensor]  # per sequence, [C_i]: entropy of the distribution drawn from (no grad)
    # per sequence, [C_i]: the trainer's log-probs under the sampler's truncation (see ``truncation``)
    truncated_logprobs: list[torch.Tensor] | None = None


def token_budget_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Split sequence indices, in order, into micro-batches of at most ``budget`` tokens.

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


def packed_logprobs(
    model,
    sequences: list[tuple[list[int], list[int]]],
    temperature: float = 1.0,
    with_entropy: bool = False,
    truncation: tuple[float, int] | None = None,
) -> PackedLogprobs:
    """Log-probs of each completion token given its prompt, for ``(prompt_ids, completion_ids)`` pairs.

    Logits are divided by ``temperature`` first. With ``truncation=(top_p, top_k)`` the result also holds,
    without gradient, the trainer's log-probs of the truncated distribution the sampler drew from (what
    vLLM reports for its own), to compare with the sampler's; -inf where a token falls outside it here.
    """
    device = next(model.parameters()).device
    input_ids, position_ids, targets, keep = [], [], [], []
    offset = 0
    for prompt_ids, completion_ids in sequences:
        ids = prompt_ids + completion_ids
        input_ids += ids
        position_ids += range(len(ids))
        # the logit at position p predicts token p + 1: keep the positions that predict completion tokens
        first = offset + len(prompt_ids) - 1
        keep += range(first, first + len(completion_ids))
        targets += completion_ids
        offset += len(ids)
    output = model(
        input_ids=torch.tensor([input_ids], device=device),
        position_ids=torch.tensor([position_ids], device=device),
        use_cache=False,
        logits_to_keep=torch.tensor(keep, device=device),
    )
    logits = output.logits[0].float() / temperature  # [sum C_i, V]
    log_softmax = torch.log_softmax(logits, dim=-1)
    target_ids = torch.tensor(targets, device=device).unsqueeze(-1)
    token_logprobs = log_softmax.gather(-1, target_ids).squeeze(-1)
    sizes = [len(c) for _, c in sequences]
    truncated_logprobs = None
    if truncation is not None:
        top_p, top_k = truncation
        if top_p >= 1.0 and top_k == 0:  # nothing truncated: the sampler's distribution is this one
            truncated_logprobs = list(token_logprobs.detach().split(sizes))
        else:
            with torch.no_grad():
                truncated = truncate_logits(logits.detach(), top_p, top_k).log_softmax(-1)
                truncated_logprobs = list(truncated.gather(-1, target_ids).squeeze(-1).split(sizes))
    entropy = []
    if with_entropy:
        with torch.no_grad():
            entropy = list((-(log_softmax.exp() * log_softmax).sum(-1)).split(sizes))
    return PackedLogprobs(list(token_logprobs.split(sizes)), entropy, truncated_logprobs)
