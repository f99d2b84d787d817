"""What every rollout engine takes and returns."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from reasonkit.errors import ReasonkitError


class EngineError(ReasonkitError):
    """An engine that cannot be built for this model or launch; the message says what to do instead."""


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    max_new_tokens: int = 256
    seed: int | None = None  # None: the engine's own random state


def prompt_seed(sampling: SamplingSettings, index: int) -> int | None:
    """The seed of the request for the ``index``-th prompt of a call. vLLM seeds a request's n samples
    seed, seed + 1, ...: prompts are spaced n apart, so no two samples of a call share a seed.

    >>> prompt_seed(SamplingSettings(n=4, seed=100), 2)
    108
    >>> prompt_seed(SamplingSettings(n=4), 2) is None
    True
    """
    return None if sampling.seed is None else sampling.seed + index * sampling.n


def prompt_token_ids(tokenizer, prompts: list[str] | list[list[int]]) -> list[list[int]]:
    """Each prompt as token ids: a text is tokenized (no special tokens added: the chat template wrote
    them), ids are taken as they are (a multi-turn completion continues from its own tokens, never
    re-tokenised).

    >>> from types import SimpleNamespace
    >>> tokenizer = lambda text, add_special_tokens: {"input_ids": [len(text)]}
    >>> prompt_token_ids(tokenizer, ["abc", [7, 8]])
    [[3], [7, 8]]
    """
    return [
        list(p) if not isinstance(p, str) else tokenizer(p, add_special_tokens=False)["input_ids"]
        for p in prompts
    ]


@dataclass
class Rollout:
    """One completion of one prompt, as the engine sampled it."""

    prompt_index: int  # which prompt of the batch it answers
    prompt_ids: list[int]
    completion_ids: list[int]  # ends with its first stop token (see stop_token_ids) unless truncated
    rollout_logprobs: list[float] | None  # the engine's log-prob of each completion token, when asked for
    text: str  # the completion decoded without its stop token, special tokens skipped
    truncated: bool  # hit max_new_tokens before any stop token
    # Which push of the policy's weights sampled it (the oldest, when an update landed mid-completion);
    # None from engines that sample the policy in place or never receive weights.
    weight_version: int | None = None
    # A recurrent-depth model's core iterations behind each completion token (reasonkit.recurrent); None
    # from any other model.
    recurrence_steps: list[int] | None = None
    # With tools (reasonkit/tools/loop.py): which completion tokens are the model's (1) and which a tool
    # result's (0, attended but never trained on), and the turns; None: one turn, every token the model's.
    tools: Any = None  # ToolUse

    @property
    def models_tokens(self) -> int:
        """Completion tokens the model sampled (tool results left out): what trains."""
        return sum(self.tools.mask) if self.tools is not None else len(self.completion_ids)


def stop_token_ids(tokenizer, checkpoint_eos: int | list[int] | None) -> list[int]:
    """The token ids every engine stops at: the tokenizer's EOS, then the ``eos_token_id`` of the checkpoint's
    generation config (an int or a list), without repeats.

    Chat checkpoints list several ends there (Llama 3.1: ``<|end_of_text|>``, ``<|eom_id|>``,
    ``<|eot_id|>``), and vLLM stops at all of them whatever it is told: so must the transformers engine.

    >>> from types import SimpleNamespace
    >>> stop_token_ids(SimpleNamespace(eos_token_id=2), [7, 2, 9])
    [2, 7, 9]
    >>> stop_token_ids(SimpleNamespace(eos_token_id=2), None)
    [2]
    """
    extra = [checkpoint_eos] if isinstance(checkpoint_eos, int) else list(checkpoint_eos or [])
    return list(dict.fromkeys([tokenizer.eos_token_id, *extra]))


def end_at_first_stop(token_ids: list[int], stop_ids: list[int]) -> tuple[list[int], bool]:
    """``token_ids`` up to and including the first stop token, and whether there was none (truncated).

    >>> end_at_first_stop([5, 7, 2, 7], stop_ids=[2, 7])
    ([5, 7], False)
    >>> end_at_first_stop([5, 6], stop_ids=[2])
    ([5, 6], True)
    """
    for position, token in enumerate(token_ids):
        if token in stop_ids:
            return token_ids[: position + 1], False
    return token_ids, True


@dataclass
class EngineInputs:
    """What an engine is built from (``rollout.make_engine``); each engine takes what it needs."""

    model_path: str  # the model's directory or hub id (engines holding their own copy load it)
    tokenizer: Any
    dtype: str = "float32"
    seed: int = 0  # make it process-specific where several processes sample
    # completions (prompts x n) per generate call, where the engine batches itself: what a call holds in memory
    batch_size: int = 256
    vllm: Any = None  # VLLMSettings (memory, tensor parallelism) for the vLLM engine
    vllm_server: Any = None  # VLLMServerSettings (urls, timeouts, weight transfer) for the vLLM server engine
    # This process among the trainer's processes: an engine whose weight push is a collective needs them.
    process_index: int = 0
    num_processes: int = 1
    # A model this process already holds (the policy being trained), and a context that yields it ready
    # to sample from (gathered under ZeRO-3, autocast): an engine that samples in place uses them.
    model: Any = None
    generation_context: Callable[[], AbstractContextManager] | None = None


class RolloutEngine(Protocol):
    """What training, evaluation and teacher generation ask of an engine."""

    # True: it samples the trainer's own model in this process, so its log-probs are the trainer's and
    # are not returned; False: it holds its own copy of the weights, returns its sampling log-probs
    # (the trainer corrects for the gap), and needs the policy's weights after every update.
    logprobs_are_trainers: bool
    # True: it generates on devices of its own, so generation may run in another thread while the trainer
    # trains (async_rollouts), and it keeps its weights still while they change (optional; default False).
    generates_apart: bool

    @classmethod
    def from_inputs(cls, inputs: EngineInputs) -> RolloutEngine: ...

    def generate(
        self, prompts: list[str] | list[list[int]], sampling: SamplingSettings, progress=None,
        with_logprobs: bool = False,
    ) -> list[Rollout]:  # fmt: skip
        """``sampling.n`` completions per prompt, grouped prompt by prompt; a prompt is its text or its token
        ids (``prompt_token_ids``)."""
        ...

    def sync_weights(self, model) -> None:
        """Take the policy's current weights (a no-op for an engine that samples it in place)."""
        ...

    def close(self) -> None:
        """Release what the engine holds (memory, processes)."""
        ...
