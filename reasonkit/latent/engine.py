"""Generation from a latent model: its thoughts first, then text, on transformers (the only engine that can
feed hidden states back; vLLM cannot, and a latent model on it is refused at ``validate``).

A latent model's folder holds ``latent.json`` (``LatentSettings``): how many thoughts it thinks and how.
Its prompts end with ``<think>`` (its manifest says the think block is prefilled); the engine appends
``<|bot|>``, runs the thoughts through the KV cache (``chain_forward``), appends ``<|eot|>`` and samples
the text that follows. A rollout's completion ids are the sampled tokens only: the thoughts are not
generated tokens, and the figures count them apart (``thoughts``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reasonkit.latent.thoughts import ThoughtTokens, chain_forward, thought_token_ids
from reasonkit.rollout.base import EngineError, EngineInputs, Rollout, end_at_first_stop, prompt_token_ids
from reasonkit.rollout.transformers_engine import TransformersEngine, held_or_loaded, left_padded, take_step

SETTINGS_FILE = "latent.json"


@dataclass(frozen=True)
class LatentSettings:
    thoughts: int  # thoughts before the text (k*c of the last curriculum stage trained)
    feedback: bool = True  # false: pause tokens (the positions, no state fed back)
    normalise: bool = False  # each fed-back state rescaled to the input embeddings' mean norm


def write_latent_settings(directory: str | Path, settings: LatentSettings) -> None:
    (Path(directory) / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=2))


def read_latent_settings(directory: str | Path) -> LatentSettings | None:
    """A latent model's settings, or None for any other model."""
    path = Path(directory) / SETTINGS_FILE
    return LatentSettings(**json.loads(path.read_text())) if path.is_file() else None


def thought_prompts(tokenizer, prompts: list[str] | list[list[int]], tokens: ThoughtTokens, thoughts: int):
    """Left-padded ids of each prompt (text or token ids) + ``<|bot|>`` + thought placeholders +
    ``<|eot|>``; (ids, mask, thought mask, bot column)."""
    prompt_ids, prompt_mask = left_padded(prompt_token_ids(tokenizer, prompts), tokenizer.pad_token_id, "cpu")
    B, P = prompt_ids.shape
    tail = torch.tensor([tokens.bot, *[tokens.latent] * thoughts, tokens.eot]).expand(B, -1)
    input_ids = torch.cat([prompt_ids, tail], dim=1)
    attention_mask = torch.cat([prompt_mask, torch.ones_like(tail)], dim=1)
    thought_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    thought_mask[:, P + 1 : P + 1 + thoughts] = True
    return input_ids, attention_mask, thought_mask, P


def latent_engine_class(name: str, model_path: str) -> type[LatentEngine]:
    """The engine class for a latent model, when a stage asks for ``name``: auto and transformers run it
    here; an engine that cannot feed a hidden state back is refused with why (``validate`` says so first)."""
    if name not in ("auto", "transformers"):
        raise EngineError(
            f"engine {name!r} cannot run {model_path}, a latent model: its thoughts feed the model's last "
            "hidden state back as the next input, which only the transformers engine does. Use engine: "
            "transformers (or auto)"
        )
    return LatentEngine


def latent_engine(name: str, inputs: EngineInputs, settings: LatentSettings) -> LatentEngine:
    return latent_engine_class(name, inputs.model_path).from_inputs(inputs, settings)


class LatentEngine(TransformersEngine):
    """Batched sampling after the thoughts from a latent model held in this process: the transformers
    engine's batching, in training and out, with its own ``_generate_batch`` (thoughts, then text). Its
    prompts end with <think>."""

    def __init__(
        self, model, tokenizer, settings: LatentSettings, batch_size: int = 256, generation_context=None
    ):
        super().__init__(model, tokenizer, batch_size, generation_context)
        self.settings = settings
        self.tokens = thought_token_ids(tokenizer)

    @classmethod
    def from_inputs(cls, inputs: EngineInputs, settings: LatentSettings | None = None) -> LatentEngine:
        """``settings`` None: the model folder's (``latent.json``), as for the model a GRPO stage continues from."""
        return cls(
            held_or_loaded(inputs),
            inputs.tokenizer,
            settings or read_latent_settings(inputs.model_path),
            inputs.batch_size,
            inputs.generation_context,
        )

    def _generate_batch(self, model, prompts, first_index, sampling, with_logprobs) -> list[Rollout]:
        # The batching passes each prompt once (decode copies its cache n times); chain_forward and
        # continue_decoding take one row per completion, so each prompt is repeated n times here.
        rows = [prompt for prompt in prompts for _ in range(sampling.n)]
        input_ids, attention_mask, thought_mask, bot = thought_prompts(
            self.tokenizer, rows, self.tokens, self.settings.thoughts
        )
        device = model.device
        input_ids, attention_mask, thought_mask = (
            input_ids.to(device),
            attention_mask.to(device),
            thought_mask.to(device),
        )
        out = chain_forward(
            model,
            input_ids,
            attention_mask,
            thought_mask,
            bot,
            feedback=self.settings.feedback,
            normalise=self.settings.normalise,
            keep_cache=True,
        )
        completions, logprobs = continue_decoding(
            model, out.logits[:, -1], out.cache, attention_mask, sampling, self.stop_token_ids, with_logprobs
        )
        rollouts = []
        for row, (new_tokens, row_logprobs) in enumerate(zip(completions, logprobs)):
            ids, truncated = end_at_first_stop(new_tokens, self.stop_token_ids)
            rollouts.append(
                Rollout(
                    prompt_index=first_index + row // sampling.n,
                    prompt_ids=input_ids[row][attention_mask[row].bool()].tolist(),
                    completion_ids=ids,
                    rollout_logprobs=row_logprobs[: len(ids)] if with_logprobs else None,
                    text=self.tokenizer.decode(ids if truncated else ids[:-1], skip_special_tokens=True),
                    truncated=truncated,
                )
            )
        return rollouts


def continue_decoding(model, logits, cache, attention_mask, sampling, stop_ids, with_logprobs):
    """Sample from ``logits`` [B, V] (the next token's, after the cached columns) until each row's first
    stop token or ``max_new_tokens``; rows that stop leave the batch with their cache. The new tokens of
    each row and, with ``with_logprobs``, each one's log-probability under the distribution it was drawn from."""
    B = logits.shape[0]
    stops = torch.tensor(stop_ids, device=logits.device)
    tokens: list[list[int]] = [[] for _ in range(B)]
    logprobs: list[list[float]] = [[] for _ in range(B)]
    running = torch.arange(B, device=logits.device)
    position = attention_mask.long().sum(-1, keepdim=True)  # [B, 1] the next token's position
    for step in range(sampling.max_new_tokens):
        chosen, going_on = take_step(logits, sampling, with_logprobs, running, tokens, logprobs, stops)
        if step == sampling.max_new_tokens - 1 or not going_on.any():
            break
        if not going_on.all():
            kept = going_on.nonzero().squeeze(-1)
            cache.batch_select_indices(kept)
            running, chosen, attention_mask, position = (
                running[kept],
                chosen[kept],
                attention_mask[kept],
                position[kept],
            )
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(running), 1)], dim=-1)
        out = model(
            input_ids=chosen[:, None],
            attention_mask=attention_mask,
            position_ids=position,
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits, position = out.past_key_values, out.logits[:, -1], position + 1
    return tokens, logprobs
