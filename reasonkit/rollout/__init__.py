"""Generation engines behind one interface (``RolloutEngine``) and one registry (``ENGINES``).

Training, evaluation and teacher generation all get their engine from ``make_engine(name, inputs)``.
``name`` is a registry name, ``auto`` (vLLM where it is installed, else transformers), or a user's engine
class as ``package.module:Class`` or ``path/to/file.py:Class`` (base.py says what it must do).
"""

from __future__ import annotations

from reasonkit.plugins import PluginNotFound, Registry
from reasonkit.rollout.base import EngineError, EngineInputs, Rollout, RolloutEngine, SamplingSettings
from reasonkit.rollout.transformers_engine import TransformersEngine
from reasonkit.rollout.vllm_engine import VLLMEngine, vllm_available
from reasonkit.rollout.vllm_server import VLLMServerEngine

# Importing an engine's module does not import vLLM: that happens when one is built.
ENGINES: Registry[type[RolloutEngine]] = Registry("engine")
ENGINES.register("transformers", TransformersEngine)
ENGINES.register("vllm", VLLMEngine)
ENGINES.register("vllm_server", VLLMServerEngine)


def resolve_engine(name: str) -> str:
    """``auto`` made concrete: vLLM where it is installed, else transformers."""
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    return name


def engine_class(name: str) -> type[RolloutEngine]:
    """The class behind an engine name (not built)."""
    try:
        return ENGINES.resolve(resolve_engine(name))
    except PluginNotFound as exc:
        if ":" in name:  # the user's own class, which did not load: the message says why
            raise EngineError(str(exc)) from None
        raise EngineError(
            f"{exc} (engines: auto, {', '.join(ENGINES.names())}, or a class of your own as "
            "package.module:Class or path/to/file.py:Class)"
        ) from None


def make_engine(name: str, inputs: EngineInputs) -> RolloutEngine:
    return engine_class(name).from_inputs(inputs)


def check_engine(where: str, name: str, async_rollouts: int = 0) -> list[str]:
    """Problems with a stage's engine: a name that resolves to no engine class, or generation ahead of
    training (``async_rollouts``) asked of an engine that shares the trainer's devices."""
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


__all__ = [
    "ENGINES",
    "EngineError",
    "EngineInputs",
    "Rollout",
    "RolloutEngine",
    "SamplingSettings",
    "TransformersEngine",
    "check_engine",
    "engine_class",
    "make_engine",
    "resolve_engine",
    "vllm_available",
]
