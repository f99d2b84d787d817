"""The policy's weights as vLLM loads them: (name, tensor) under the base model's checkpoint names.

Shared by the colocated engine (an in-process reload) and the server engine (a weight-transfer engine,
which also needs each tensor's name, dtype and shape before any is sent: ``policy_weight_metadata``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def policy_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) as the base model names them, one module at a time.

    A LoRA layer yields its base weight plus its adapters' deltas, computed out of place: merging adapters
    into the frozen base and out again at every push is lossy in bf16, the base drifts, and it is also the
    KL reference. Under ZeRO-3, each module's parameters are gathered from their shards and copied out, so
    the whole model never exists twice at once; the gathers are collectives, so every process iterates.
    """
    sharded = _sharded(model)
    for module_name, module, is_lora in _pushed_modules(model):
        if is_lora:
            with _gathered(list(module.parameters()), sharded):
                tensors = _merged_lora(module)
        else:
            params = list(module.named_parameters(recurse=False))
            with _gathered([p for _, p in params], sharded):
                tensors = [(name, p.detach().clone() if sharded else p.detach()) for name, p in params]
        yield from ((_base_name(f"{module_name}.{name}"), tensor) for name, tensor in tensors)


def policy_weight_metadata(model) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """(name, dtype, full shape) of every tensor ``policy_weights`` yields, in its order, gathering nothing
    (a ZeRO-3 shard knows its full shape as ``ds_shape``)."""

    def shape(p) -> tuple[int, ...]:
        return tuple(p.ds_shape) if hasattr(p, "ds_shape") else tuple(p.shape)

    out = []
    for module_name, module, is_lora in _pushed_modules(model):
        if is_lora:
            base = module.get_base_layer()
            params = [("weight", base.weight)] + ([("bias", base.bias)] if base.bias is not None else [])
        else:
            params = list(module.named_parameters(recurse=False))
        out += [(_base_name(f"{module_name}.{name}"), p.dtype, shape(p)) for name, p in params]
    return out


def _pushed_modules(model):
    """(name, module, is_lora) of every module with parameters of its own, a LoRA layer standing for its
    adapters' submodules too."""
    from peft.tuners.lora import LoraLayer

    lora_layer = None  # the name of the last LoRA layer seen: its submodules are pushed with it
    for module_name, module in model.named_modules():
        if lora_layer is not None and module_name.startswith(lora_layer + "."):
            continue
        if isinstance(module, LoraLayer):
            lora_layer = module_name
            yield module_name, module, True
        elif any(True for _ in module.parameters(recurse=False)):
            yield module_name, module, False


def _sharded(model) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())  # ds_id marks a ZeRO-3 shard


def _merged_lora(layer) -> list[tuple[str, torch.Tensor]]:
    """A LoRA layer's weight with its active adapters added (peft's ``get_delta_weight``: B @ A times the
    scaling, transposed for fan_in_fan_out), summed in float32 and rounded once to the base dtype."""
    base = layer.get_base_layer()
    adapters = [a for a in layer.active_adapters if a in layer.lora_A and a not in layer.merged_adapters]
    unsupported = [a for a in adapters if a in layer.lora_variant or layer.lora_bias[a]]
    if unsupported:
        raise NotImplementedError(f"pushing LoRA variants (DoRA, ...) or lora_bias to vLLM: {unsupported}")
    # a copy: under ZeRO-3 the gathered weight is released when the gather ends
    weight = base.weight.detach().to(torch.float32, copy=True)
    for adapter in adapters:
        weight += layer.get_delta_weight(adapter).float()
    tensors = [("weight", weight.to(base.weight.dtype))]
    if base.bias is not None:
        tensors.append(("bias", base.bias.detach().clone()))
    return tensors


def _gathered(params, sharded: bool):
    if not sharded:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)


def _base_name(name: str) -> str:
    """A peft parameter's name in the base model (vLLM's checkpoint names)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")
