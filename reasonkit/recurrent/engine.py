"""Generation from a recurrent-depth model at a chosen test-time depth, on transformers.

``Depth`` says how deep: a fixed r (``recurrences``; null: the model's training mean) and, with
``exit_kl``, the adaptive exit (each token stops iterating once its next-token distribution moves less
than that between iterations, r being the cap). The model has no KV cache, so every step runs the rows
still going in full (prompt + tokens so far); a row that stops leaves the batch. Each rollout records
the core iterations behind each of its tokens (``Rollout.recurrence_steps``). vLLM cannot run the model
(its architecture is ours): ``recurrent_engine`` refuses it, as ``validate`` does first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasonkit.recurrent.schema import NO_RECURRENCE_ENGINES
from reasonkit.rollout.base import EngineError, EngineInputs, Rollout, end_at_first_stop
from reasonkit.rollout.transformers_engine import TransformersEngine, held_or_loaded, left_padded, take_step


@dataclass(frozen=True)
class Depth:
    recurrences: int | None = None  # core iterations per token; None: the model's mean_recurrence
    exit_kl: float | None = None  # stop a token's iterations once KL(p_{i-1} ‖ p_i) < this; None: fixed r

    def label(self) -> str:
        """How results name it: ``r=8`` at a fixed depth, ``exit`` with the adaptive exit (its cap is in the
        results' ``max_recurrences``).

        >>> Depth(8).label(), Depth(16, 5e-4).label()
        ('r=8', 'exit')
        """
        return "exit" if self.exit_kl is not None else f"r={self.recurrences}"


def recurrent_engine(name: str, inputs: EngineInputs, depth: Depth) -> RecurrentEngine:
    """The engine for a recurrent model when a stage asks for ``name``: auto and transformers run it here."""
    if name in NO_RECURRENCE_ENGINES:
        raise EngineError(
            f"engine {name!r} cannot run {inputs.model_path}, a recurrent-depth model: vLLM has no implementation "
            "of its architecture (a shared core block iterated r times). Use engine: transformers (or auto)"
        )
    return RecurrentEngine.from_inputs(inputs, depth)


class RecurrentEngine(TransformersEngine):
    """Batched sampling from a recurrent-depth model held in this process, at one ``Depth``: the
    transformers engine's batching, with its own ``_generate_batch`` (no KV cache; iterations recorded)."""

    def __init__(
        self, model, tokenizer, batch_size: int = 256, depth: Depth = Depth(), generation_context=None
    ):
        super().__init__(model, tokenizer, batch_size, generation_context)
        self.depth = depth

    @classmethod
    def from_inputs(cls, inputs: EngineInputs, depth: Depth = Depth()) -> RecurrentEngine:
        return cls(
            held_or_loaded(inputs), inputs.tokenizer, inputs.batch_size, depth, inputs.generation_context
        )

    def _generate_batch(self, model, prompt_ids, first_index, sampling, with_logprobs) -> list[Rollout]:
        # The batching passes each prompt once; with no cache to copy, each is repeated n times here.
        rows = [list(ids) for ids in prompt_ids for _ in range(sampling.n)]
        input_ids, attention_mask = left_padded(rows, self.tokenizer.pad_token_id, model.device)
        tokens, steps, logprobs = decode_without_cache(
            model, input_ids, attention_mask, sampling, self.stop_token_ids, self.depth, with_logprobs
        )
        rollouts = []
        for row, new_tokens in enumerate(tokens):
            ids, truncated = end_at_first_stop(new_tokens, self.stop_token_ids)
            rollouts.append(
                Rollout(
                    prompt_index=first_index + row // sampling.n,
                    prompt_ids=rows[row],
                    completion_ids=ids,
                    rollout_logprobs=logprobs[row] if with_logprobs else None,
                    text=self.tokenizer.decode(ids if truncated else ids[:-1], skip_special_tokens=True),
                    truncated=truncated,
                    recurrence_steps=steps[row],
                )
            )
        return rollouts


def decode_without_cache(model, input_ids, attention_mask, sampling, stop_ids, depth: Depth, with_logprobs):
    """Sample each left-padded row until its first stop token or ``max_new_tokens``, a full forward per
    token. The new tokens of each row, the core iterations behind each, and (``with_logprobs``) each one's
    log-probability under the distribution it was drawn from."""
    stops = torch.tensor(stop_ids, device=input_ids.device)
    rows = input_ids.shape[0]
    tokens: list[list[int]] = [[] for _ in range(rows)]
    steps: list[list[int]] = [[] for _ in range(rows)]
    logprobs: list[list[float]] = [[] for _ in range(rows)]
    running = torch.arange(rows, device=input_ids.device)  # each batch row's original row
    for step in range(sampling.max_new_tokens):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            logits_to_keep=1,
            recurrences=depth.recurrences,
            exit_kl=depth.exit_kl,
        )
        chosen, going_on = take_step(
            out.logits[:, -1], sampling, with_logprobs, running, tokens, logprobs, stops
        )
        for row, used in zip(running.tolist(), out.recurrence_steps[:, -1].tolist()):
            steps[row].append(used)
        if step == sampling.max_new_tokens - 1 or not going_on.any():
            break
        kept = going_on.nonzero().squeeze(-1)
        running, chosen, input_ids, attention_mask = (
            running[kept],
            chosen[kept],
            input_ids[kept],
            attention_mask[kept],
        )
        input_ids = torch.cat([input_ids, chosen[:, None]], dim=-1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(running), 1)], dim=-1)
    return tokens, steps, logprobs
