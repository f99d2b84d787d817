"""Recipe settings of the vLLM engines (colocated and server); part of the recipe schema (config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class VLLMSettings:
    gpu_memory_utilization: float = 0.3  # share of the GPU for weights + KV cache, colocated with training
    kv_cache_gb: float | None = None  # a fixed KV-cache size instead (null: 0.5 GB off GPU)
    tensor_parallel_size: int = 1


@dataclass
class VLLMServerSettings:
    """``engine: vllm_server``: vLLM servers started apart (``reasonkit vllm-serve MODEL``), on their own devices."""

    # One or more servers (data-parallel rollout): each process's prompts are spread over them.
    urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8000"])
    # Seconds one request may take (a generation, a weight update) before it counts as failed.
    timeout: float = 600.0
    # Seconds to wait at start for every server to answer /health before saying which is down.
    startup_timeout: float = 300.0
    # A generation request that fails (timeout, dropped connection) is sent again this many times, once
    # its server answers /health again; then the run stops, its last checkpoint intact.
    retries: int = 2
    # How weights travel to the servers (must match the server's --weight-transfer-config): nccl between
    # GPUs, gloo anywhere (CPU); auto: nccl when the trainer has CUDA, else gloo.
    weight_transfer: Literal["auto", "nccl", "gloo"] = "auto"
    # The address the servers reach the trainer's first process at for the transfer's rendezvous
    # (null: 127.0.0.1 when every server is on this machine, else this machine's hostname).
    transfer_host: str | None = None
    # Its port (0: a free one).
    transfer_port: int = 0


def check_engine(where: str, name: str, async_rollouts: int = 0) -> list[str]:
    """Problems with a stage's engine: a name that resolves to no engine class, or generation ahead of
    training (``async_rollouts``) asked of an engine that shares the trainer's devices."""
    from reasonkit.rollout import EngineError, engine_class

    try:
        engine = engine_class(name)
    except EngineError as exc:
        return [f"{where}: {exc}"]
    if async_rollouts and not getattr(engine, "generates_apart", False):
        return [
            f"{where}: async_rollouts needs an engine that generates apart from the trainer (vllm_server); "
            f"{name} samples on the trainer's own devices, so generating ahead would only take turns with "
            "training, and it cannot change weights under a generation in flight"
        ]
    if async_rollouts not in (0, 1):
        return [
            f"{where.rsplit('.', 1)[0]}.async_rollouts: {async_rollouts}; 0 (synchronous) or 1 (one-step-off-policy). "
            "Each weight push waits for the batches in flight, so that a batch is sampled whole by one version "
            "of the weights (reproducible, resumable): more batches ahead would overlap no more generation "
            "with training, only train further off-policy"
        ]
    return []
