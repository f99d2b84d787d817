"""Generation engines behind one interface (``RolloutEngine``) and one factory (``make_engine``).

Training, evaluation and teacher generation all get their engine from ``make_engine(name, inputs)``.
``name`` is a registry name (``ENGINES``), ``auto`` (vLLM where it is installed, else transformers), or
a user's engine class as ``package.module:Class`` or ``path/to/file.py:Class``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from reasonkit.rollout.base import EngineError, EngineInputs, Rollout, RolloutEngine, SamplingSettings
from reasonkit.rollout.transformers_engine import TransformersEngine
from reasonkit.rollout.vllm_engine import vllm_available

ENGINES = {
    "transformers": "reasonkit.rollout.transformers_engine:TransformersEngine",
    "vllm": "reasonkit.rollout.vllm_engine:VLLMEngine",
    "vllm_server": "reasonkit.rollout.vllm_server:VLLMServerEngine",
}


def resolve_engine(name: str) -> str:
    """``auto`` made concrete: vLLM where it is installed, else transformers."""
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    return name


def engine_class(name: str) -> type[RolloutEngine]:
    """The class behind an engine name (imported, not built: vLLM is imported only when built)."""
    spec = ENGINES.get(resolve_engine(name), name)
    module, sep, attribute = spec.rpartition(":")
    if not sep:
        raise EngineError(
            f"unknown engine {name!r}; one of {['auto', *ENGINES]}, or a class as package.module:Class "
            "or path/to/file.py:Class"
        )
    try:
        if module.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(module).stem, module)
            if loader is None or not Path(module).is_file():
                raise FileNotFoundError(module)
            loaded = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(loaded)
        else:
            loaded = importlib.import_module(module)
        return getattr(loaded, attribute)
    except (ImportError, FileNotFoundError, AttributeError) as exc:
        raise EngineError(f"engine {name!r} could not be loaded: {exc}") from None


def make_engine(name: str, inputs: EngineInputs) -> RolloutEngine:
    return engine_class(name).from_inputs(inputs)


__all__ = [
    "ENGINES",
    "EngineError",
    "EngineInputs",
    "Rollout",
    "RolloutEngine",
    "SamplingSettings",
    "TransformersEngine",
    "engine_class",
    "make_engine",
    "resolve_engine",
    "vllm_available",
]
