"""The one way to plug anything in: a registry of named things, and a loader for the user's own.

Every kind of plug-in (stage types, engines, rewards, the GRPO objective's variants) is a ``Registry``:
built-ins are registered by name, and a recipe may name its own as ``package.module:attr`` or
``path/to/file.py:attr``, which ``load_object`` imports. It lives in the ``rewards`` package, which
imports nothing from reasonkit, so that rewards can use it too; reasonkit imports it from here.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PluginNotFound(LookupError):
    """A name no registry knows, or a ``module:attr`` that does not load; the message says what would."""


class Registry(Generic[T]):
    """Names to things of one kind (``kind`` names it in messages).

    >>> colours = Registry("colour")
    >>> colours.register("red", 1)
    1
    >>> colours.get("red"), colours.names()
    (1, ['red'])
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    rewards.plugins.PluginNotFound: unknown colour 'rde'; did you mean 'red'?
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, thing: T) -> T:
        self._entries[name] = thing
        return thing

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def get(self, name: str) -> T:
        """The thing registered as ``name``; a miss names the closest one, or every one."""
        if name in self._entries:
            return self._entries[name]
        raise PluginNotFound(f"unknown {self.kind} {name!r}; {self.suggest(name)}")

    def resolve(self, spec: str) -> Any:
        """A registered name, or a ``package.module:attr`` / ``path/to/file.py:attr`` of the user's."""
        if spec in self._entries or ":" not in spec:
            return self.get(spec)
        return load_object(spec, self.kind)

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.5)
        if close:
            return f"did you mean {close[0]!r}?"
        return f"one of {', '.join(self.names())}"


def load_object(spec: str, kind: str = "object") -> Any:
    """The attribute ``spec`` names: ``package.module:attr`` (imported) or ``path/to/file.py:attr`` (run).

    >>> load_object("rewards.plugins:Registry") is Registry
    True
    >>> load_object("no_such_module:f", "reward")
    Traceback (most recent call last):
    ...
    rewards.plugins.PluginNotFound: reward 'no_such_module:f': cannot import no_such_module: No module named 'no_such_module'
    """
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise PluginNotFound(f"{kind} {spec!r}: give package.module:name or path/to/file.py:name")
    module = _run_file(where, spec, kind) if where.endswith(".py") else _import(where, spec, kind)
    if not hasattr(module, attribute):
        raise PluginNotFound(f"{kind} {spec!r}: {where} has no {attribute!r}")
    return getattr(module, attribute)


def _import(module_name: str, spec: str, kind: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginNotFound(f"{kind} {spec!r}: cannot import {module_name}: {exc}") from None


def _run_file(path: str, spec: str, kind: str):
    """A user's file as a module, run afresh at each lookup (a file edited between two runs of one
    process is read as it is now)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise PluginNotFound(f"{kind} {spec!r}: file not found: {path}")
    name = f"reasonkit_plugin_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    loader = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module  # before running it: dataclasses look their module up
    try:
        loader.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
