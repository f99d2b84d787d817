"""Training precision: the dtype the trained weights are held in, and the one forward passes compute in.

A recipe's ``model.dtype`` is the compute precision. Trained weights and their optimizer state stay in
float32 in every launch: an AdamW update of ~1e-6 is far below half a bfloat16 ulp of a weight near
0.02, so bf16 weights updated in place barely move. Which path each launch takes:

- one process or DDP: the model is loaded in float32 and its forward passes run under
  ``torch.autocast(bfloat16)``. Per trained parameter: 4 bytes of weight + 4 of gradient + 8 of AdamW
  state = 16 bytes (pure bf16 weights with bf16 AdamW state would be 8), plus autocast's bf16 copy of
  each weight while a forward runs; activations are bf16.
- DeepSpeed: bf16 is switched on in its config when the recipe says bfloat16; DeepSpeed then holds
  bf16 weights and gradients and keeps float32 master weights and AdamW state itself: 2 + 2 + 4 + 8 =
  16 bytes, sharded by ZeRO.
- LoRA: the frozen base keeps the recipe's dtype (it is never updated); peft keeps the adapters in
  float32, and forward passes run under autocast as above.

A model that is not trained (the KL reference) is loaded like the policy, so at step 0 both compute
exactly the same log-probs.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from reasonkit.models import DTYPES

log = logging.getLogger(__name__)
_LAUNCH_NAMES = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}


def load_dtype(compute_dtype: str, *, deepspeed: bool, lora: bool) -> str:
    """The dtype a trained model is loaded in (see the module docstring for why)."""
    if deepspeed or lora:
        return compute_dtype
    return "float32"


def autocast_dtype(compute_dtype: str, *, deepspeed: bool) -> torch.dtype | None:
    """The dtype forward passes autocast to, or None (float32, or DeepSpeed, which casts the model)."""
    if deepspeed or compute_dtype == "float32":
        return None
    return DTYPES[compute_dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def launch_mixed_precision(compute_dtype: str) -> str:
    """accelerate's name for the recipe's dtype. Trainers pass it to accelerate, so the recipe's
    ``model.dtype`` decides (DeepSpeed's bf16 mode included) whatever the launch said; a launch that
    said otherwise is warned about."""
    wanted = _LAUNCH_NAMES[compute_dtype]
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched is not None and launched != wanted:
        log.warning(
            "the launch asked for mixed_precision %r; the recipe's model.dtype is %s, so training uses %r",
            launched,
            compute_dtype,
            wanted,
        )
    return wanted
