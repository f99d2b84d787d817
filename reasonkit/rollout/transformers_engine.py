"""Generation with transformers' ``generate``: the CPU default and the fallback when vLLM is absent.

It samples with the recipe's settings only (none of the checkpoint's generation config applies) and stops
at the same token ids as the vLLM engine (``stop_token_ids``).
"""

from __future__ import annotations

import contextlib

import torch
from transformers import GenerationConfig

from reasonkit.rollout.base import EngineInputs, Rollout, SamplingSettings, end_at_first_stop, stop_token_ids


class TransformersEngine:
    """Batched sampling from a model held in this process (left padding, KV cache).

    In training it samples the policy itself, as the trainer holds it (``generation_context`` yields it
    gathered under ZeRO-3, in the training precision), so its log-probs are the trainer's own.
    """

    logprobs_are_trainers = True
    generates_apart = False  # on the trainer's own devices: no generating ahead (async_rollouts)

    def __init__(self, model, tokenizer, batch_size: int = 256, generation_context=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # completions per generate call (at least one prompt's n)
        self.stop_token_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
        self.generation_context = generation_context or (lambda: contextlib.nullcontext(self.model))

    @classmethod
    def from_inputs(cls, inputs: EngineInputs) -> TransformersEngine:
        """The model this process holds (training), or the saved one loaded whole (evaluation, teachers)."""
        model = inputs.model
        if model is None:
            from reasonkit.models import load_model, whole_weights

            with whole_weights():  # on this process alone, even after a ZeRO-3 stage
                model = load_model(inputs.model_path, inputs.dtype)
        return cls(model, inputs.tokenizer, inputs.batch_size, inputs.generation_context)

    def sync_weights(self, model) -> None:
        """Nothing to do: it samples the trainer's model itself."""

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def generate(
        self, prompt_texts: list[str], sampling: SamplingSettings, progress=None, with_logprobs=False
    ) -> list[Rollout]:
        """``sampling.n`` completions per prompt, grouped prompt by prompt."""
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        rollouts: list[Rollout] = []
        with self.generation_context() as model, _checkpoint_generation_config_ignored(model):
            was_training = model.training
            model.eval()
            # A call's memory grows with its completions, not its prompts: n of them per prompt.
            prompts_per_call = max(1, self.batch_size // sampling.n)
            for start in range(0, len(prompt_texts), prompts_per_call):
                batch = prompt_texts[start : start + prompts_per_call]
                rollouts += self._generate_batch(model, batch, start, sampling, with_logprobs)
                if progress is not None:
                    progress.update(len(batch))
            model.train(was_training)
        return rollouts

    def _generation_config(self, sampling: SamplingSettings, with_logprobs: bool) -> GenerationConfig:
        """The recipe's sampling settings and nothing else."""
        greedy = sampling.temperature == 0
        # Each warper is given its value: one left unset would take transformers' global default (top_k
        # would be 50). Greedy decoding applies no warper.
        warpers = (
            {}
            if greedy
            else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}
        )
        return GenerationConfig(
            do_sample=not greedy,
            **warpers,
            num_return_sequences=sampling.n,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_scores=with_logprobs,
        )

    def _generate_batch(self, model, prompts, first_index, sampling, with_logprobs) -> list[Rollout]:
        tok = self.tokenizer
        encoded = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = model.generate(
            **encoded,
            generation_config=self._generation_config(sampling, with_logprobs),
            # The model here is whole (gathered under ZeRO-3), so processes need not decode in lockstep,
            # which transformers would otherwise do whenever DeepSpeed ZeRO-3 is registered.
            synced_gpus=False,
        )
        prompt_len = encoded["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]  # [P*n, new]
        logprobs = None
        if with_logprobs:
            # scores are the processed (temperature / top-p / top-k) distributions that were sampled from
            scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # [P*n, new, V]
            logprobs = scores.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        rollouts = []
        for row in range(new_tokens.shape[0]):
            prompt_row = row // sampling.n
            ids, truncated = end_at_first_stop(new_tokens[row].tolist(), self.stop_token_ids)
            prompt_mask = encoded["attention_mask"][prompt_row].bool()
            rollouts.append(
                Rollout(
                    prompt_index=first_index + prompt_row,
                    prompt_ids=encoded["input_ids"][prompt_row][prompt_mask].tolist(),
                    completion_ids=ids,
                    rollout_logprobs=logprobs[row, : len(ids)].tolist() if logprobs is not None else None,
                    # as vLLM's text: without the stop token, which need not be a special token
                    text=tok.decode(ids if truncated else ids[:-1], skip_special_tokens=True),
                    truncated=truncated,
                )
            )
        return rollouts


@contextlib.contextmanager
def _checkpoint_generation_config_ignored(model):
    """Blank the model's own generation config for the duration: ``generate`` fills every field left unset
    (None) in the config it is given from ``model.generation_config`` (transformers' generation/utils.py,
    ``_prepare_generation_config``), which is the checkpoint's generation_config.json, so its
    repetition_penalty, bad_words_ids, min_new_tokens, ... would apply, and a None cannot unset them.
    The trainer's log-probs assume plain temperature/top-p/top-k sampling."""
    # peft's generate copies the wrapper's generation_config (the base model's) onto the base model.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = base.generation_config
    base.generation_config = GenerationConfig()
    try:
        yield
    finally:
        base.generation_config = own
