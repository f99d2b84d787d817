"""Generation with transformers models held in this process: the CPU default and the fallback when vLLM
is absent.

It decodes with its own loop rather than ``generate``, for two reasons. Rows leave the batch as soon as
they stop, so a batch whose completions end at very different lengths costs the tokens it samples, not
rows x the longest (``generate`` runs every row to the last one's end). And it samples with the recipe's
settings only, through the trainer's own truncation (``truncate_logits``): none of the checkpoint's
generation config applies, so the sampler's log-probs are the trainer's. It stops at the same token ids
as the vLLM engine (``stop_token_ids``).
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from reasonkit.grpo.logprobs import truncate_logits
from reasonkit.rollout.base import (
    EngineError,
    EngineInputs,
    Rollout,
    SamplingSettings,
    end_at_first_stop,
    prompt_token_ids,
    stop_token_ids,
)


class TransformersEngine:
    """Batched sampling from a model held in this process (left padding, KV cache, finished rows dropped).

    In training it samples the policy itself, as the trainer holds it (``generation_context`` yields it
    gathered under ZeRO-3, in the training precision), so its log-probs are the trainer's own.
    """

    logprobs_are_trainers = True
    generates_apart = False  # on the trainer's own devices: no generating ahead (async_rollouts)

    def __init__(self, model, tokenizer, batch_size: int = 256, generation_context=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # completions per call (at least one prompt's n)
        self.stop_token_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
        self.generation_context = generation_context or (lambda: contextlib.nullcontext(self.model))

    @classmethod
    def from_inputs(cls, inputs: EngineInputs) -> TransformersEngine:
        return cls(held_or_loaded(inputs), inputs.tokenizer, inputs.batch_size, inputs.generation_context)

    def sync_weights(self, model) -> None:
        """Nothing to do: it samples the trainer's model itself."""

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def generate(
        self, prompts, sampling: SamplingSettings, progress=None, with_logprobs=False
    ) -> list[Rollout]:
        """``sampling.n`` completions per prompt, grouped prompt by prompt (texts or token ids)."""
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        rollouts: list[Rollout] = []
        with self.generation_context() as model:
            was_training = model.training
            model.eval()
            # A call's memory grows with its completions, not its prompts: n of them per prompt.
            prompts_per_call = max(1, self.batch_size // sampling.n)
            prompt_ids = prompt_token_ids(self.tokenizer, prompts)
            for start in range(0, len(prompt_ids), prompts_per_call):
                batch = prompt_ids[start : start + prompts_per_call]
                rollouts += self._generate_batch(model, batch, start, sampling, with_logprobs)
                if progress is not None:
                    progress.update(len(batch))
            model.train(was_training)
        return rollouts

    def _generate_batch(self, model, prompt_ids, first_index, sampling, with_logprobs) -> list[Rollout]:
        tok = self.tokenizer
        input_ids, attention_mask = left_padded(prompt_ids, tok.pad_token_id, model.device)
        completions, logprobs = decode(
            model, input_ids, attention_mask, sampling, self.stop_token_ids, with_logprobs
        )
        rollouts = []
        for row, (new_tokens, row_logprobs) in enumerate(zip(completions, logprobs)):
            prompt_row = row // sampling.n
            ids, truncated = end_at_first_stop(new_tokens, self.stop_token_ids)
            rollouts.append(
                Rollout(
                    prompt_index=first_index + prompt_row,
                    prompt_ids=list(prompt_ids[prompt_row]),
                    completion_ids=ids,
                    rollout_logprobs=row_logprobs if with_logprobs else None,
                    # as vLLM's text: without the stop token, which need not be a special token
                    text=tok.decode(ids if truncated else ids[:-1], skip_special_tokens=True),
                    truncated=truncated,
                )
            )
        return rollouts


def left_padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` padded on the left to one length, and their attention mask.

    >>> left_padded([[5, 6, 7], [8]], pad_id=0, device="cpu")
    (tensor([[5, 6, 7],
            [0, 0, 8]]), tensor([[1, 1, 1],
            [0, 0, 1]]))
    """
    width = max(len(row) for row in rows)
    ids = torch.tensor([[pad_id] * (width - len(row)) + list(row) for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return ids, mask


def held_or_loaded(inputs: EngineInputs):
    """The model this process holds (training), or the saved one loaded whole (evaluation, teachers)."""
    if inputs.model is not None:
        return inputs.model
    from reasonkit.models import load_model, whole_weights

    with whole_weights():  # on this process alone, even after a ZeRO-3 stage
        return load_model(inputs.model_path, inputs.dtype)


def decode(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampling: SamplingSettings,
    stop_ids: list[int], with_logprobs: bool,
) -> tuple[list[list[int]], list[list[float]]]:  # fmt: skip
    """Sample ``sampling.n`` completions of each left-padded prompt row (row ``i * n + j`` the j-th of
    prompt i) until its first stop token or ``max_new_tokens``; the new tokens of each row and, with
    ``with_logprobs``, the log-probability each had under the distribution it was sampled from
    (temperature, then top-k and top-p, as the trainer computes it).

    Each prompt is run once, its KV cache and last logits then copied n times: the n rows of a group
    share it, where `generate` computes it n times (measured at 25M parameters, 10-token prompts, 48 new
    tokens, G = 8: generation 5.55 -> 5.35 s; more with longer prompts). A row that stops leaves the
    batch, its KV cache with it, so later steps cost only the rows still running."""
    n = sampling.n
    stops = torch.tensor(stop_ids, device=input_ids.device)
    completions = input_ids.shape[0] * n
    tokens: list[list[int]] = [[] for _ in range(completions)]
    logprobs: list[list[float]] = [[] for _ in range(completions)]
    running = torch.arange(completions, device=input_ids.device)  # each batch row's original row
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    last_only = {"logits_to_keep": 1} if _keeps_last_logits(model) else {}
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        **last_only,
    )
    if out.past_key_values is None:  # feeding it one token at a time would silently drop the context
        raise EngineError(
            f"{type(model).__name__} returns no KV cache, which this engine decodes with; a recurrent-depth model "
            "runs on its own engine (reasonkit.recurrent.engine)"
        )
    if n > 1:
        out.past_key_values.batch_repeat_interleave(n)
    attention_mask = attention_mask.repeat_interleave(n, dim=0)
    positions = positions[:, -1:].repeat_interleave(n, dim=0)
    last_logits = out.logits[:, -1].repeat_interleave(n, dim=0)  # [rows, V]
    for step in range(sampling.max_new_tokens):
        logits = last_logits if step == 0 else out.logits[:, -1]
        chosen, going_on = take_step(logits, sampling, with_logprobs, running, tokens, logprobs, stops)
        if step == sampling.max_new_tokens - 1 or not going_on.any():
            break
        if not going_on.all():  # finished rows leave, with their cache
            kept = going_on.nonzero().squeeze(-1)
            out.past_key_values.batch_select_indices(kept)
            running, chosen, attention_mask, positions = (
                running[kept],
                chosen[kept],
                attention_mask[kept],
                positions[kept],
            )
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(running), 1)], dim=-1)
        positions = positions + 1
        out = model(
            input_ids=chosen[:, None], attention_mask=attention_mask, position_ids=positions,
            past_key_values=out.past_key_values, use_cache=True,
        )  # fmt: skip
    return tokens, logprobs


def take_step(
    logits: torch.Tensor, sampling: SamplingSettings, with_logprobs: bool, running: torch.Tensor,
    tokens: list[list[int]], logprobs: list[list[float]], stops: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One decoding step of the ``running`` rows (their indices in ``tokens``): each row's next token drawn
    from its ``logits`` and appended, with its log-probability when asked for; (the tokens [B], which rows
    go on: those that drew no stop token [B])."""
    chosen, logp = next_tokens(logits, sampling, with_logprobs)
    rows = running.tolist()
    for row, token in zip(rows, chosen.tolist()):
        tokens[row].append(token)
    if with_logprobs:
        for row, value in zip(rows, logp.gather(-1, chosen[:, None]).squeeze(-1).tolist()):
            logprobs[row].append(value)
    return chosen, ~torch.isin(chosen, stops)


def next_tokens(
    logits: torch.Tensor, sampling: SamplingSettings, with_logprobs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's next token [B] from its logits [B, V] (argmax at temperature 0, else drawn after
    temperature, top-k and top-p), and the log-probabilities it was drawn from [B, V] (at temperature 0
    only ``with_logprobs``)."""
    logits = logits.float()
    if sampling.temperature == 0:
        return logits.argmax(-1), logits.log_softmax(-1) if with_logprobs else None
    logp = truncate_logits(logits / sampling.temperature, sampling.top_p, sampling.top_k).log_softmax(-1)
    return sample(logp), logp


def sample(log_probs: torch.Tensor) -> torch.Tensor:
    """One token per row, drawn from ``exp(log_probs)`` by inverting its cumulative sum with one uniform
    draw per row (in float64, so 150k-token vocabularies sum exactly enough). ``torch.multinomial`` cost
    4x this on a CPU at Qwen's 151,936-token vocabulary (53 against 12 ms for 16 rows), a fifth of the
    generation phase; tokens of probability 0 are never drawn."""
    cdf = log_probs.exp().double().cumsum(-1)
    draw = torch.rand(cdf.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, draw, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def _keeps_last_logits(model) -> bool:
    """Whether the model can compute logits for the last position only (most transformers LMs can): a
    prompt's other positions would cost a [tokens, vocabulary] matrix for nothing."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters
