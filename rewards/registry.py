"""Find reward functions by name, ``package.module:function`` or ``path/to/file.py:function``.

A reward function follows TRL's GRPOTrainer convention, so one written for TRL works unchanged::

    fn(prompts: list[str], completions: list[str], **dataset_columns) -> list[float | None]

one value per completion, ``None`` meaning "does not apply". Dataset columns arrive as keyword
lists aligned with ``completions``; a parameter named after a column (``answer``) declares that the
reward needs that column.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path

RewardFn = Callable[..., list]
_REGISTRY: dict[str, RewardFn] = {}
# What a reward judges, which decides the adversarial battery `reasonkit rewards check` runs on it:
# "answer" (a final answer against the `answer` column), "tests" (a program against the `tests` column),
# "format" (how the completion is written) or "length".
CHECKS = ("answer", "tests", "format", "length")
_CHECKS: dict[str, str] = {}
# Passed by the trainer (TRL's names, plus max_new_tokens), not read from the data.
STANDARD_PARAMETERS = {
    "prompts",
    "completions",
    "completion_ids",
    "max_new_tokens",
    "trainer_state",
    "log_extra",
    "log_metric",
}


class RewardNotFound(LookupError):
    pass


def register(name: str, checks: str):
    """Decorator: make a reward available to recipes under ``name``; ``checks`` is one of ``CHECKS``."""
    assert checks in CHECKS, checks

    def add(fn: RewardFn) -> RewardFn:
        _REGISTRY[name], _CHECKS[name] = fn, checks
        return fn

    return add


def known() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(spec: str) -> RewardFn:
    """The reward function a recipe names."""
    _load_builtins()
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" not in spec:
        raise RewardNotFound(
            f"unknown reward {spec!r}; known rewards: {', '.join(known())} "
            "(or give package.module:function or path/to/file.py:function)"
        )
    where, _, name = spec.rpartition(":")
    module = _load_file(where) if where.endswith(".py") else _import(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise RewardNotFound(f"{where!r} has no function {name!r}")
    return fn


def what_it_checks(spec: str) -> str:
    """What a reward judges: as registered, or for a user's function, read from the columns it needs."""
    _load_builtins()
    if spec in _CHECKS:
        return _CHECKS[spec]
    columns = required_columns(get(spec))
    return "answer" if "answer" in columns else "tests" if "tests" in columns else "format"


def required_columns(fn: RewardFn) -> list[str]:
    """Dataset columns a reward names as parameters (beyond the standard ones) and has no default for."""
    return [p.name for p in _named_parameters(fn) if p.default is inspect.Parameter.empty]


def argument_names(fn: RewardFn) -> list[str]:
    """Parameters a recipe may bind with ``args:`` (everything named except the standard ones)."""
    return [p.name for p in _named_parameters(fn)]


def _named_parameters(fn: RewardFn) -> list[inspect.Parameter]:
    parameters = inspect.signature(fn).parameters.values()
    return [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in STANDARD_PARAMETERS
    ]


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise RewardNotFound(f"cannot import reward module {module_name!r}: {exc}") from None


def _load_file(path: str):
    file = Path(path)
    if not file.is_file():
        raise RewardNotFound(f"reward file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"reasonkit_user_reward_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_builtins() -> None:
    import rewards.answer  # noqa: F401  (registers on import)
    import rewards.code  # noqa: F401
    import rewards.format  # noqa: F401
    import rewards.length  # noqa: F401
    import rewards.math_answer  # noqa: F401
