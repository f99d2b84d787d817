"""The tools a stage's completions may call, loaded once: functions, environments, their JSON schemas.

A tool is a plain Python function (sync or async) with type hints and a Google-style docstring, as in
TRL's ``GRPOTrainer(tools=[...])``: its schema is transformers' ``get_json_schema`` of it, shown to the
model by the chat template's ``tools=``. Built-ins (``TOOLS``: python, calculator) are named by name;
the user's own load as ``package.module:function`` or ``path/to/file.py:function`` through the same
loader as every other plug-in.

An environment follows TRL's ``environment_factory`` contract: the factory builds one instance per
completion (instances are pooled and reused after ``reset``, as TRL does); ``reset(**row)`` may return
text appended to the prompt's last message; its public methods are tools bound to that instance; an
optional ``get_reward()`` becomes a reward named after the class. A mapping ``{name: factory}`` picks
each row's environment by its ``environment`` column.

Everything a recipe names is checked here at ``validate`` (``check_tools``): a module that does not
import, a function whose docstring cannot give a schema, an environment without ``reset``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from reasonkit.errors import ReasonkitError
from reasonkit.plugins import PluginNotFound, Registry, load_object
from reasonkit.tools.builtin import calculator, python
from reasonkit.tools.settings import ToolSettings

TOOLS: Registry[Callable] = Registry("tool")
TOOLS.register("python", python)
TOOLS.register("calculator", calculator)


class ToolError(ReasonkitError, ValueError):
    """A tool or environment that cannot be used as the recipe names it; the message says what to fix."""


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable  # a plain function, or a method bound to one environment instance
    schema: dict  # {"type": "function", "function": {"name", "description", "parameters"}}

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


def describe(function: Callable, where: str) -> Tool:
    """``function`` as a tool: its schema from its type hints and docstring (refused, saying what to add,
    when they cannot give one)."""
    from transformers.utils import get_json_schema

    try:
        schema = get_json_schema(function)
    except Exception as exc:  # DocstringParsingException, TypeHintParsingException
        raise ToolError(
            f"{where}: {getattr(function, '__name__', function)!r} cannot be shown to the model: {exc}. A tool "
            'needs a type hint on every argument and a Google-style docstring: a summary line, then "Args:" '
            "with one line per argument"
        ) from None
    return Tool(schema["function"]["name"], function, schema)


def load_function(spec: str, where: str) -> Tool:
    try:
        function = TOOLS.resolve(spec)
    except PluginNotFound as exc:
        raise ToolError(f"{where}: {exc}") from None
    if not callable(function):
        raise ToolError(f"{where}: {spec!r} is not a function")
    return describe(function, where)


def environment_methods(environment) -> list[Callable]:
    """The public methods of an environment instance, bound: its tools (``reset``/``get_reward`` are not).
    Listed on the class, as TRL does, so that properties are not evaluated."""
    return [
        getattr(environment, name)
        for name, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


@dataclass
class Environments:
    """The recipe's environment factories by name (None: one for every row) and their pooled instances."""

    factories: dict[str | None, Callable]
    by_column: bool  # a mapping: each row names its environment in the `environment` column
    pool: dict[str | None, list] = field(default_factory=dict)
    rewarded: list[type] = field(default_factory=list)  # classes with get_reward, one reward each

    def instances(self, rows: list[dict]) -> list:
        """One instance per row, reused from the pool where possible (a batch takes each at most once)."""
        taken: dict[str | None, int] = {}
        out = []
        for row in rows:
            name = self.name_of(row)
            pool = self.pool.setdefault(name, [])
            index = taken.get(name, 0)
            if index == len(pool):
                pool.append(self.factories[name]())
            taken[name] = index + 1
            out.append(pool[index])
        return out

    def name_of(self, row: dict) -> str | None:
        if not self.by_column:
            return None
        name = row.get("environment")
        if name not in self.factories:
            raise ToolError(
                f"a row's environment {name!r} is not among tools.environment_factory's: {sorted(self.factories)}"
            )
        return name


def load_environments(setting: str | dict[str, str] | None, where: str) -> Environments | None:
    if setting is None:
        return None
    specs = setting if isinstance(setting, dict) else {None: setting}
    factories = {}
    for name, spec in specs.items():
        try:
            factories[name] = load_object(spec, "environment factory")
        except PluginNotFound as exc:
            raise ToolError(f"{where}: {exc}") from None
    environments = Environments(factories, by_column=isinstance(setting, dict))
    for name, factory in factories.items():  # one instance of each, checked and kept in the pool
        label = where if name is None else f"{where}.{name}"
        instance = factory()
        if not callable(getattr(instance, "reset", None)):
            raise ToolError(
                f"{label}: {type(instance).__name__} has no reset(**row) method, which TRL's contract needs"
            )
        for method in environment_methods(instance):
            describe(method, label)
        if callable(getattr(instance, "get_reward", None)) and type(instance) not in environments.rewarded:
            environments.rewarded.append(type(instance))
        environments.pool[name] = [instance]
    return environments


class Toolbox:
    """A stage's tools: the functions for every completion, and the environments' per completion."""

    def __init__(self, settings: ToolSettings, where: str = "tools"):
        self.settings = settings
        self.functions = [load_function(spec, f"{where}.functions") for spec in settings.functions]
        self.environments = load_environments(settings.environment_factory, f"{where}.environment_factory")
        names = [tool.name for tool in self.functions]
        if len(set(names)) < len(names):
            raise ToolError(f"{where}.functions: two tools share a name: {names}")

    def sessions(self, rows: list[dict]) -> list[Session]:
        """One session per row (a completion's tools; rows repeated G times give G sessions), its
        environment reset with the row's columns."""
        environments = self.environments.instances(rows) if self.environments else [None] * len(rows)
        sessions = []
        for row, environment in zip(rows, environments):
            tools = list(self.functions)
            observation = None
            if environment is not None:
                tools += [describe(method, "environment") for method in environment_methods(environment)]
                columns = {
                    k: v for k, v in row.items() if not (self.environments.by_column and k == "environment")
                }
                observation = environment.reset(**columns)
            sessions.append(Session({tool.name: tool for tool in tools}, environment, observation))
        return sessions

    def schemas(self, row: dict | None = None) -> list[dict]:
        """What the chat template shows the model for ``row`` (its environment's methods included)."""
        tools = list(self.functions)
        if self.environments:
            name = self.environments.name_of(row or {})
            tools += [
                describe(m, "environment") for m in environment_methods(self.environments.pool[name][0])
            ]
        return [tool.schema for tool in tools]

    def tool_names(self) -> list[str]:
        """Every tool the model may be shown: the functions, then each environment's methods."""
        names = [tool.name for tool in self.functions]
        for instances in self.environments.pool.values() if self.environments else []:
            names += [m.__name__ for m in environment_methods(instances[0]) if m.__name__ not in names]
        return names

    def reward_names(self) -> list[str]:
        """The environment classes that score their completions (``get_reward``), one reward each."""
        return [cls.__name__ for cls in self.environments.rewarded] if self.environments else []


@dataclass
class Session:
    """One completion's tools: the functions and its environment's methods, by name."""

    tools: dict[str, Tool]
    environment: object | None = None
    observation: str | None = None  # what reset() returned, appended to the prompt's last message

    def environment_reward(self) -> tuple[str, float | None | str] | None:
        """(class name, what its ``get_reward()`` gives now) where the environment has one, read as soon as
        the rollout ends (the pooled instance is reset for a later batch); a failure as its reason (str)."""
        get_reward = getattr(self.environment, "get_reward", None)
        if not callable(get_reward):
            return None
        name = type(self.environment).__name__
        try:
            value = get_reward()
            if inspect.isawaitable(value):
                value = asyncio.run(value)
        except Exception as exc:  # the user's code: reported as a failed reward, the step goes on
            return name, f"raised {type(exc).__name__}: {exc}"
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return name, f"returned {value!r}; expected a float or None"
        return name, None if value is None else float(value)


def check_tools(settings: ToolSettings, where: str) -> list[str]:
    """What is wrong with a ``tools:`` section, for ``validate``: every tool and environment loads and has a
    schema (an environment is built once to list its methods)."""
    problems = []
    if settings.max_calls < 0:
        problems.append(f"{where}.max_calls: {settings.max_calls}; 0 (no tools) or more")
    if settings.timeout <= 0:
        problems.append(f"{where}.timeout: {settings.timeout}; seconds, > 0")
    try:
        Toolbox(settings, where)
    except ToolError as exc:
        problems.append(str(exc))
    return problems
