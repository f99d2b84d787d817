"""A weight-transfer engine for vLLM over gloo: trainer → vLLM server weight pushes without GPUs.

vLLM 0.32 moves weights from a trainer into a running server through pluggable weight-transfer engines
(``vllm/distributed/weight_transfer/``): a worker-side ``WeightTransferEngine`` inside the server and a
trainer-side ``TrainerWeightTransferEngine``, each looked up by backend name in its own registry, driven
through the server's RL routes (``/init_weight_transfer_engine``, ``/start_weight_update``,
``/update_weights``, ``/finish_weight_update``). Its built-in engines (nccl, ipc, ...) all need CUDA. This
one is the NCCL engine's protocol on a gloo process group, so it runs wherever torch does (CPU CI, a
laptop, a CPU server beside GPU trainers) — slower than NCCL, fine for tests and small models.

The group is private to the transfer: a ``TCPStore`` hosted by the trainer's sender (rank 0) at
``master_address:master_port``, the server's workers joining at ``rank_offset + their rank``; it never
touches ``torch.distributed``'s default group (the trainer's DDP/DeepSpeed one, or vLLM's own).

Each update: the trainer sends the parameters' names, dtypes and shapes over HTTP, then broadcasts the
tensors in chunks (same-dtype runs packed into one flat buffer of at most ``chunk_bytes``, so a model of
hundreds of tensors costs a few collectives). The worker cuts the same chunks from the metadata, unpacks
and loads each tensor with ``model.load_weights`` between vLLM's layerwise-reload start and finish (the
path ``reload_weights`` takes, which re-processes the CPU backend's prepacked linear layers).

Registered under ``gloo`` in both of vLLM's registries by ``register()``: ``reasonkit vllm-serve`` calls it
before starting the server (its engine processes are forked from it and inherit the registration), and
``pyproject.toml`` declares it as a ``vllm.general_plugins`` entry point for a plain ``vllm serve`` once
reasonkit is installed.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
from vllm.distributed.weight_transfer.base import (
    ParamMeta,
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

BACKEND = "gloo"
CHUNK_BYTES = 64 << 20


@dataclass
class GlooInitInfo(WeightTransferInitInfo):
    """What a server's workers need to join the transfer group (sent by the trainer at the handshake)."""

    master_address: str
    master_port: int
    rank_offset: int  # the group rank of this server's first worker (the trainer's sender is 0)
    world_size: int  # the trainer's sender plus every worker of every server it pushes to
    timeout_s: float = 600.0  # a peer silent this long fails the transfer instead of hanging it
    chunk_bytes: int = CHUNK_BYTES


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    """One update's parameters, in the order they are broadcast."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    backend: ClassVar[str] = BACKEND

    master_address: str
    master_port: int
    world_size: int
    timeout_s: float = 600.0
    chunk_bytes: int = CHUNK_BYTES


def open_group(address: str, port: int, rank: int, world_size: int, timeout_s: float):
    """A gloo group of its own over a TCPStore that rank 0 hosts (outside torch.distributed's default group)."""
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(address, port, world_size, is_master=rank == 0, timeout=timeout)
    return dist.ProcessGroupGloo(
        dist.PrefixStore("reasonkit_weights", store), rank, world_size, timeout
    ), store


def chunk_spans(sizes: list[int], dtypes: list[str], limit: int) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive tensors broadcast together: one dtype each, at most ``limit`` bytes
    unless a single tensor is larger. Both sides compute them from the same metadata.

    >>> chunk_spans([4, 4, 4, 8], ["float32"] * 4, limit=8)
    [(0, 2), (2, 3), (3, 4)]
    >>> chunk_spans([4, 4, 4], ["float32", "bfloat16", "bfloat16"], limit=100)
    [(0, 1), (1, 3)]
    """
    spans, start, total = [], 0, 0
    for i, (size, dtype) in enumerate(zip(sizes, dtypes)):
        if i > start and (dtype != dtypes[start] or total + size > limit):
            spans.append((start, i))
            start, total = i, 0
        total += size
    if sizes:
        spans.append((start, len(sizes)))
    return spans


def _broadcast(group, tensor: torch.Tensor) -> None:
    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


def _nbytes(shape, dtype: torch.dtype) -> int:
    return int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """The server side: joins the trainer's gloo group, receives each update and loads it layer by layer."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, config, vllm_config, device, model) -> None:
        super().__init__(config, vllm_config, device, model)
        self.group = None
        self.store = None
        self.chunk_bytes = CHUNK_BYTES

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        # A unique rank per worker across data-parallel replicas and tensor/pipeline ranks, as vLLM's NCCL
        # engine computes it.
        parallel = self.parallel_config
        worker_rank = parallel.data_parallel_index * parallel.world_size + parallel.rank
        self.shutdown()  # a new trainer (a restarted run) replaces the previous one's group
        self.chunk_bytes = init_info.chunk_bytes
        self.group, self.store = open_group(
            init_info.master_address,
            init_info.master_port,
            init_info.rank_offset + worker_rank,
            init_info.world_size,
            init_info.timeout_s,
        )

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def update_weights(self, update_info: dict) -> None:
        # The base class synchronises the accelerator afterwards; gloo has finished when broadcast returns.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError(
                "gloo weight transfer not initialised: call /init_weight_transfer_engine first"
            )
        dtypes = [getattr(torch, name) for name in update_info.dtype_names]
        sizes = [_nbytes(shape, dtype) for shape, dtype in zip(update_info.shapes, dtypes)]
        for start, end in chunk_spans(sizes, update_info.dtype_names, self.chunk_bytes):
            numels = [int(torch.Size(s).numel()) for s in update_info.shapes[start:end]]
            flat = torch.empty(sum(numels), dtype=dtypes[start])
            _broadcast(self.group, flat)
            pieces = flat.split(numels)
            self.model.load_weights(
                [
                    (name, piece.view(shape).to(self.device))
                    for name, piece, shape in zip(
                        update_info.names[start:end], pieces, update_info.shapes[start:end]
                    )
                ]
            )

    def shutdown(self) -> None:
        self.group, self.store = None, None


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """The trainer side. Every trainer process calls ``send_weights`` (iterating the source may be a collective,
    e.g. ZeRO-3 gathers); only the sender (rank 0) drives the servers and broadcasts."""

    init_info_cls = GlooTrainerInitInfo

    def __init__(self, *, client, source, is_sender: bool = True, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.chunk_bytes = chunk_bytes
        self.group = None
        self.store = None

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client, source=None):
        if source is None:
            raise ValueError("the gloo weight transfer needs a WeightSource")
        engine = cls(
            client=client, source=source, is_sender=init_info.is_sender, chunk_bytes=init_info.chunk_bytes
        )
        if not engine.is_sender:
            return engine
        worker_info = GlooInitInfo(
            master_address=init_info.master_address,
            master_port=init_info.master_port,
            rank_offset=1,
            world_size=init_info.world_size,
            timeout_s=init_info.timeout_s,
            chunk_bytes=init_info.chunk_bytes,
        )
        # The server's workers block in the handshake until every rank has joined: ask for it on a side
        # thread while this process opens the group as its rank 0.
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, asdict(worker_info))
            engine.group, engine.store = open_group(
                init_info.master_address, init_info.master_port, 0, init_info.world_size, init_info.timeout_s
            )
            joined.result()
        return engine

    def send_weights(self) -> None:
        meta = self.source.metadata()
        if not self.is_sender:
            for _ in self.source:  # the same gathers as the sender, in the same order
                pass
            return
        update = GlooUpdateInfo(
            names=[m.name for m in meta],
            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
            shapes=[list(m.shape) for m in meta],
        )
        self.client.start_weight_update()
        # The workers receive inside update_weights: it runs beside the broadcast, as with NCCL.
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            received = pool.submit(self.client.update_weights, asdict(update))
            self._broadcast_all(_checked(self.source, meta), update)
            received.result()
        finally:
            pool.shutdown(wait=False)  # a failed broadcast leaves the request hanging until its timeout
        self.client.finish_weight_update()

    def _broadcast_all(self, pairs: Iterator[tuple[str, torch.Tensor]], update: GlooUpdateInfo) -> None:
        sizes = [_nbytes(s, getattr(torch, d)) for s, d in zip(update.shapes, update.dtype_names)]
        for start, end in chunk_spans(sizes, update.dtype_names, self.chunk_bytes):
            tensors = [tensor for _, (_, tensor) in zip(range(start, end), pairs)]
            if len(tensors) != end - start:
                raise ValueError(
                    f"the weight source ended after {start + len(tensors)} of {len(update.names)} parameters"
                )
            flat = torch.cat([t.detach().reshape(-1).cpu() for t in tensors])
            _broadcast(self.group, flat)
        for _ in pairs:  # to its end: the source's gathers, and _checked's count of what it yielded
            pass

    def shutdown(self) -> None:
        self.group, self.store = None, None


def _checked(source, meta: list[ParamMeta]) -> Iterator[tuple[str, torch.Tensor]]:
    """The source's pairs, each checked against the metadata the workers were sent: a mismatch would split
    the stream differently on the two sides and load garbage, so it fails here naming the parameter."""
    count = 0
    for name, tensor in source:
        if count >= len(meta):
            raise ValueError(
                f"the weight source yielded more than the {len(meta)} parameters it declared: {name}"
            )
        expected = meta[count]
        if (name, tensor.dtype, tuple(tensor.shape)) != (
            expected.name,
            expected.dtype,
            tuple(expected.shape),
        ):
            raise ValueError(
                f"the weight source yielded {name} {tensor.dtype} {tuple(tensor.shape)} where its metadata "
                f"declared {expected.name} {expected.dtype} {tuple(expected.shape)}"
            )
        count += 1
        yield name, tensor
    if count != len(meta):
        raise ValueError(f"the weight source yielded {count} parameters but declared {len(meta)}")


def register() -> None:
    """Add ``gloo`` to vLLM's worker-side and trainer-side registries (idempotent: a vLLM general plugin may
    be loaded several times per process)."""
    from vllm.distributed.weight_transfer.factory import (
        WeightTransferEngineFactory,
        WeightTransferTrainerFactory,
    )

    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, GlooWeightTransferEngine)
    if BACKEND not in WeightTransferTrainerFactory._registry:
        WeightTransferTrainerFactory.register_engine(BACKEND, GlooTrainerWeightTransferEngine)
