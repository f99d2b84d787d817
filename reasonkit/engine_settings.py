"""Recipe settings of the vLLM engines (colocated and server), part of the GRPO and eval stages' sections.

Apart from reasonkit.rollout, whose engines import torch: reading a recipe does not need them.
"""

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
