"""Find reward functions by name, ``package.module:function`` or ``path/to/file.py:function``.

A reward function follows TRL's GRPOTrainer convention, so one written for TRL works unchanged::

    fn(prompts, completions, **dataset_columns) -> list[float | None]

one value per completion, ``None`` meaning "does not apply", with prompts and completions as text or as
messages (``rewards.convention`` says which a reward gets). Dataset columns arrive as keyword lists
aligned with ``completions``; a parameter named after a column (``answer``, ``solution``) declares that
the reward needs that column.

A **factory** (TRL's ``get_soft_overlong_punishment(max_completion_len, soft_punish_cache)``) is a
callable that cannot take ``completions=`` (neither that parameter nor ``**kwargs``), so it cannot be a
reward: ``build`` calls it once with the recipe's ``args`` and the reward is what it returns. For a
reward, ``args`` are bound to it instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from rewards.convention import accepts_both
from rewards.plugins import PluginNotFound, Registry

RewardFn = Callable[..., list]
REWARDS: Registry[RewardFn] = Registry("reward")
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
    "environments",
}
# Columns that hold a gold answer: a reward naming one judges answers.
ANSWER_COLUMNS = ("answer", "solution")


RewardNotFound = PluginNotFound  # the name reward code and its callers know


class RewardArgumentError(ValueError):
    """A reward's ``args`` do not fit it (a factory missing one of its parameters, or given an unknown one)."""


def register(name: str, checks: str):
    """Decorator: make a reward available to recipes under ``name``; ``checks`` is one of ``CHECKS``.

    The registered function takes prompts and completions in either shape (text or messages).
    """
    assert checks in CHECKS, checks

    def add(fn: RewardFn) -> RewardFn:
        reward = accepts_both(fn)
        _CHECKS[name] = checks
        return REWARDS.register(name, reward)

    return add


def known() -> list[str]:
    return sorted(REWARDS.names())


def get(spec: str) -> RewardFn:
    """The reward function a recipe names: a registered name, package.module:function or path/to/file.py:function."""
    try:
        fn = REWARDS.resolve(spec)
    except PluginNotFound as exc:
        if ":" in spec:
            raise
        raise PluginNotFound(
            f"{exc} (known rewards: {', '.join(known())}; or give package.module:function or "
            "path/to/file.py:function)"
        ) from None
    if not callable(fn):
        raise PluginNotFound(f"reward {spec!r} is not a function")
    return fn


def is_factory(fn) -> bool:
    """Whether ``fn`` makes a reward rather than being one: it cannot take ``completions=``."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.name == "completions" or p.kind is p.VAR_KEYWORD for p in parameters)


def build(spec: str, args: dict | None = None) -> RewardFn:
    """The reward a recipe entry makes: ``spec``'s function with ``args`` bound, or what its factory returns."""
    fn, args = get(spec), dict(args or {})
    if not is_factory(fn):
        return partial(fn, **args) if args else fn
    problems = argument_problems(fn, args)
    if problems:
        raise RewardArgumentError(f"reward factory {spec!r}: {'; '.join(problems)}")
    reward = fn(**args)
    if not callable(reward):
        raise RewardArgumentError(f"{spec!r} takes no `completions`, and what it returns is not callable")
    return reward


def argument_problems(fn, args: dict) -> list[str]:
    """What is wrong with ``args`` for ``fn``: unknown names, and a factory's parameters left without a value."""
    names = argument_names(fn)
    problems = [
        f"unknown argument {key!r} (it takes {', '.join(names) or 'none'})"
        for key in args
        if key not in names
    ]
    missing = missing_factory_args(fn, args)
    if missing:
        problems.append(f"needs args {missing} (the factory's parameters without a default)")
    return problems


def missing_factory_args(fn, args: dict) -> list[str]:
    """The parameters without a default that ``args`` leaves out, when ``fn`` is a factory (else none)."""
    return [name for name in required_columns(fn) if name not in args] if is_factory(fn) else []


def what_it_checks(spec: str, args: dict | None = None) -> str:
    """What a reward judges: as registered, or for a user's function, read from what it takes.

    A gold-answer column (``answer``, ``solution``) makes it an answer reward, ``tests`` a code reward;
    one that reads ``completion_ids`` but not ``completions`` judges length; anything else, format.
    """
    if spec in _CHECKS:
        return _CHECKS[spec]
    reward = build(spec, args)
    columns = required_columns(reward)
    if "tests" in columns:
        return "tests"
    if any(c in columns for c in ANSWER_COLUMNS):
        return "answer"
    parameters = inspect.signature(reward).parameters
    return "length" if "completion_ids" in parameters and "completions" not in parameters else "format"


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
