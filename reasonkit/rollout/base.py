"""What every rollout engine takes and returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    max_new_tokens: int = 256
    seed: int | None = None


@dataclass
class Rollout:
    """One completion of one prompt, as the engine sampled it."""

    prompt_index: int  # which prompt of the batch it answers
    prompt_ids: list[int]
    completion_ids: list[int]  # ends with EOS unless truncated
    rollout_logprobs: list[float] | None  # the engine's log-prob of each completion token, when asked for
    text: str  # the completion decoded, special tokens skipped
    truncated: bool  # hit max_new_tokens before EOS
