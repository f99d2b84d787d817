"""The curriculum's examples and batches: which rows a step draws, at which stage, laid out how.

At curriculum stage k an example whose trace splits into steps s_1..s_m is trained as
``prompt <think> <|bot|> (k*c thoughts) <|eot|> s_{k+1} .. s_m </think> answer EOS``, the loss on what
follows ``<|eot|>``. A trace with fewer steps than k (m < k) is handled as the reference does: all its
steps go, and it still gets k*c thoughts; such rows are counted (``short_traces``). With ``mix_earlier``
p, each row is trained at stage k with probability 1 - p and at a uniformly drawn earlier stage
0..k-1 otherwise (so earlier stages are not forgotten; stage 0 is the full trace).

Which examples a step draws, and each one's stage, depend only on (seed, k, step): every process
computes the whole batch of B rows and keeps its own B/W of them, so W processes train on exactly the
batches one process would, and a resumed run draws what it would have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from reasonkit.latent.thoughts import ThoughtTokens


@dataclass(frozen=True)
class CurriculumExample:
    prefix_ids: list[int]  # the rendered prompt, ending with <think>
    steps: list[str]  # the trace's steps, by the stage's splitter
    answer: str


@dataclass
class Batch:
    """One process's rows of a step, laid out for ``chain_forward``."""

    input_ids: torch.Tensor  # [b, T]
    attention_mask: torch.Tensor  # [b, T]
    labels: torch.Tensor  # [b, T] -100 except the text after <|eot|>
    thought_mask: torch.Tensor  # [b, T] bool
    bot_column: int
    stages: list[int]  # the curriculum stage of each row
    short_traces: int  # rows whose trace had fewer steps than their stage


def rest_text(steps: list[str], skipped: int, answer: str, think_close: str) -> str:
    """What the model writes after its thoughts: the steps not replaced, then the answer.

    >>> rest_text(["a.", "b.", "c."], 1, "42", "</think>")
    'b. c.</think>42'
    >>> rest_text(["a."], 2, "42", "</think>")
    '</think>42'
    """
    return " ".join(steps[skipped:]) + think_close + answer


def thoughts_at(stage: int, thoughts_per_step: int) -> int:
    """Thoughts of a row at curriculum ``stage`` (k*c, whatever the length of its trace, as the reference)."""
    return stage * thoughts_per_step


def draw(
    count: int, batch_size: int, stage: int, step: int, seed: int, mix_earlier: float
) -> tuple[list[int], list[int]]:
    """The B example indices of a step of curriculum ``stage`` and the stage each row is trained at.

    Examples come in a fresh random order each epoch (every example once per epoch).

    >>> draw(10, 4, 2, 0, 0, 0.0)[1]
    [2, 2, 2, 2]
    >>> draw(10, 4, 2, 0, 0, 0.0) == draw(10, 4, 2, 0, 0, 0.0)
    True
    """
    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, count)
        indices.append(_epoch_order(count, seed, stage, epoch)[offset])
    mixing = _generator(seed, stage, step, 1)
    chance = torch.rand(batch_size, generator=mixing).tolist()
    earlier = torch.randint(0, max(stage, 1), (batch_size,), generator=mixing).tolist()
    stages = [e if stage > 0 and u < mix_earlier else stage for u, e in zip(chance, earlier)]
    return indices, stages


@functools.lru_cache(maxsize=4)
def _epoch_order(count: int, seed: int, stage: int, epoch: int) -> list[int]:
    return torch.randperm(count, generator=_generator(seed, stage, epoch, 0)).tolist()


def _generator(seed: int, stage: int, counter: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + stage) * 1_000_003 + counter) * 4 + stream)


def build_batch(
    examples: list[CurriculumExample],
    stages: list[int],
    tokenizer,
    tokens: ThoughtTokens,
    thoughts_per_step: int,
    think_close: str,
) -> Batch:
    """Rows laid out with a common <|bot|> column (left padding), text after the thoughts right-padded."""
    rests, short = [], 0
    for example, stage in zip(examples, stages):
        short += 0 < stage and len(example.steps) < stage
        rests.append(rest_text(example.steps, stage, example.answer, think_close))
    rest_ids = [
        ids + [tokenizer.eos_token_id] for ids in tokenizer(rests, add_special_tokens=False)["input_ids"]
    ]
    counts = [thoughts_at(stage, thoughts_per_step) for stage in stages]
    bot = max(len(e.prefix_ids) for e in examples)
    width = bot + 1 + max(n + 1 + len(r) for n, r in zip(counts, rest_ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    attention_mask = torch.zeros_like(input_ids)
    thought_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, (example, n, rest) in enumerate(zip(examples, counts, rest_ids)):
        start = bot - len(example.prefix_ids)
        tail = [tokens.bot, *[tokens.latent] * n, tokens.eot, *rest]
        ids = example.prefix_ids + tail
        input_ids[row, start : start + len(ids)] = torch.tensor(ids)
        attention_mask[row, start : start + len(ids)] = 1
        thought_mask[row, bot + 1 : bot + 1 + n] = True
        text_from = bot + 2 + n
        labels[row, text_from : text_from + len(rest)] = torch.tensor(rest)
    return Batch(input_ids, attention_mask, labels, thought_mask, bot, list(stages), short)
