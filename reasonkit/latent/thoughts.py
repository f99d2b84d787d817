"""The chain of continuous thoughts on any causal LM of transformers that takes ``inputs_embeds``
(Coconut, Hao et al. 2024, facebookresearch/coconut).

Glossary: B rows, T columns (token positions), D hidden size, V vocabulary, n the most thoughts of any
row, b the column of ``<|bot|>``.

A row is laid out as: left padding, the prompt (ending with ``<think>``), ``<|bot|>``, its thoughts (the
placeholder ``<|latent|>`` in the token ids), ``<|eot|>``, the rest of the trace, ``</think>``, the
answer, EOS, right padding. Rows are left-padded so that every ``<|bot|>`` is in column b; thought j of
every row is then in column b + 1 + j. A row with fewer thoughts has its ``<|eot|>`` and text there.

Continuous thoughts: the input at thought column c is the model's last hidden state at column c - 1 (the
one its language-model head reads), instead of a token's embedding. With the KV cache that takes n + 1
forward passes: columns [0, b], then each thought column alone, then the last thought and everything
after it. Nothing is detached, as in the reference: the loss on the text after the thoughts reaches the
weights through every thought of the chain. ``chain_forward`` is tested equal (outputs and gradients) to
a full forward per thought.

Pause tokens (``feedback=False``): the same positions hold the learned embedding of ``<|latent|>``; one
ordinary forward, no state fed back: the baseline that has the extra positions but no latent reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BOT, EOT, LATENT = "<|bot|>", "<|eot|>", "<|latent|>"
THOUGHT_TOKENS = (BOT, EOT, LATENT)


@dataclass(frozen=True)
class ThoughtTokens:
    bot: int  # begin of thought: its last hidden state is the first thought
    eot: int  # end of thought: the text resumes after it
    latent: int  # the placeholder at a thought's position (pause mode: its embedding is the input)


def thought_token_ids(tokenizer) -> ThoughtTokens:
    """The ids of the three tokens in a tokenizer that has them (``add_thought_tokens``)."""
    ids = tokenizer.convert_tokens_to_ids(list(THOUGHT_TOKENS))
    return ThoughtTokens(*ids)


def add_thought_tokens(tokenizer, model) -> ThoughtTokens:
    """Add ``<|bot|>``, ``<|eot|>`` and ``<|latent|>`` as special tokens (never in text, skipped when
    decoding), growing the model's embeddings to match; their rows start as the mean of the others."""
    missing = [t for t in THOUGHT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            weight = model.get_input_embeddings().weight
            weight[rows:] = weight[:rows].mean(0)
    return thought_token_ids(tokenizer)


@dataclass
class ChainOutput:
    logits: torch.Tensor  # [B, T, V]
    thoughts: torch.Tensor  # [B, n, D] the states fed back (rows without thought j: their token's embedding)
    passes: int  # forward passes taken
    cache: object = None  # the KV cache of every column, when asked for (generation continues from it)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, T]


def normalise_thought(hidden: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``hidden`` [B, D] rescaled to norm ``scale`` (the input embeddings' mean norm), or as it is."""
    if scale is None:
        return hidden
    return hidden * (scale / hidden.norm(dim=-1, keepdim=True).clamp(min=1e-6))


def embedding_scale(model) -> torch.Tensor:
    """The mean norm of the input embedding rows (detached): what a fed-back thought is scaled to."""
    return model.get_input_embeddings().weight.detach().norm(dim=-1).mean()


def chain_forward(
    model,
    input_ids: torch.Tensor,  # [B, T]
    attention_mask: torch.Tensor,  # [B, T]
    thought_mask: torch.Tensor,  # [B, T] bool: the thought columns of each row
    bot_column: int,
    *,
    feedback: bool = True,
    normalise: bool = False,
    keep_cache: bool = False,
) -> ChainOutput:
    """Logits of every column with the thoughts fed back (see the module docstring); ``keep_cache``: also
    the KV cache of all T columns, for generation to continue from."""
    embeds = model.get_input_embeddings()(input_ids)  # [B, T, D]
    position_ids = positions(attention_mask)
    n = int(thought_mask.sum(-1).max()) if thought_mask.numel() else 0
    if not feedback or n == 0:
        out = model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=keep_cache,
        )
        thoughts = embeds[:, bot_column + 1 : bot_column + 1 + n]
        return ChainOutput(out.logits, thoughts, 1, out.past_key_values if keep_cache else None)
    scale = embedding_scale(model) if normalise else None
    T = input_ids.shape[1]
    bounds = [0, *range(bot_column + 1, bot_column + 1 + n), T]  # pass i runs [bounds[i], bounds[i+1])
    cache, logits, thoughts, fed = None, [], [], None
    for i in range(n + 1):
        lo, hi = bounds[i], bounds[i + 1]
        x = embeds[:, lo:hi]
        if i > 0:  # column lo is thought i of the rows that have one
            first = torch.where(thought_mask[:, lo, None], fed, x[:, 0])  # [B, D]
            thoughts.append(first)
            x = torch.cat([first[:, None], x[:, 1:]], dim=1)
        last = i == n
        out = model(
            inputs_embeds=x,
            attention_mask=attention_mask[:, :hi],
            position_ids=position_ids[:, lo:hi],
            past_key_values=cache,
            use_cache=keep_cache or not last,
            output_hidden_states=not last,
        )
        logits.append(out.logits)
        cache = out.past_key_values
        if not last:
            fed = normalise_thought(out.hidden_states[-1][:, -1], scale)  # [B, D]
    kept = cache if keep_cache else None
    return ChainOutput(torch.cat(logits, dim=1), torch.stack(thoughts, dim=1), n + 1, kept)


def completion_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the labelled columns (label -100 elsewhere), and their count."""
    shifted_logits = logits[:, :-1].float()  # [B, T-1, V]
    shifted_labels = labels[:, 1:]  # [B, T-1]
    loss = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]),
        shifted_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return loss, int((shifted_labels != -100).sum())
