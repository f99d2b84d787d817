"""Generation with transformers' ``generate``: the CPU default and the fallback when vLLM is absent."""

from __future__ import annotations

import torch

from reasonkit.rollout.base import Rollout, SamplingSettings


class TransformersEngine:
    """Batched sampling from a model held in this process (left padding, KV cache)."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # prompts per generate call

    @torch.no_grad()
    def generate(
        self, prompt_texts: list[str], sampling: SamplingSettings, progress=None, with_logprobs=False
    ) -> list[Rollout]:
        """``sampling.n`` completions per prompt, grouped prompt by prompt."""
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        was_training = self.model.training
        self.model.eval()
        rollouts: list[Rollout] = []
        for start in range(0, len(prompt_texts), self.batch_size):
            batch = prompt_texts[start : start + self.batch_size]
            rollouts += self._generate_batch(batch, start, sampling, with_logprobs)
            if progress is not None:
                progress.update(len(batch))
        self.model.train(was_training)
        return rollouts

    def _generate_batch(self, prompts, first_index, sampling, with_logprobs) -> list[Rollout]:
        tok = self.tokenizer
        encoded = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.model.device
        )
        greedy = sampling.temperature == 0
        out = self.model.generate(
            **encoded,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy or sampling.top_k == 0 else sampling.top_k,
            num_return_sequences=sampling.n,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_scores=with_logprobs,
            # The model here is whole (gathered under ZeRO-3), so processes need not decode in lockstep,
            # which transformers would otherwise do whenever DeepSpeed ZeRO-3 is registered.
            synced_gpus=False,
        )
        prompt_len = encoded["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]  # [P*n, new]
        logprobs = None
        if (
            with_logprobs
        ):  # scores are the processed (temperature / top-p) distributions that were sampled from
            scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # [P*n, new, V]
            logprobs = scores.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        rollouts = []
        for row in range(new_tokens.shape[0]):
            prompt_row = row // sampling.n
            ids = new_tokens[row].tolist()
            length = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else len(ids)
            ids = ids[:length]
            prompt_mask = encoded["attention_mask"][prompt_row].bool()
            rollouts.append(
                Rollout(
                    prompt_index=first_index + prompt_row,
                    prompt_ids=encoded["input_ids"][prompt_row][prompt_mask].tolist(),
                    completion_ids=ids,
                    rollout_logprobs=logprobs[row, :length].tolist() if logprobs is not None else None,
                    text=tok.decode(ids, skip_special_tokens=True),
                    truncated=tok.eos_token_id not in ids,
                )
            )
        return rollouts
