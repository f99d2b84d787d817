"""Options that several subcommands share, and the defaults of flags that mirror a recipe field.

A flag that sets what a recipe field sets (``reasonkit eval --max-new-tokens`` and an eval stage's
``max_new_tokens``) takes its default and its choices from that field: the command and the recipe
cannot drift apart. Only light modules are read here (no torch): ``reasonkit --help`` builds every
parser.
"""

from __future__ import annotations

import dataclasses
import typing

from reasonkit.config import ModelConfig
from reasonkit.eval.schema import BenchmarkSource
from reasonkit.tools.settings import ToolSettings
from rewards.convention import SHAPES


def schema_default(schema: type, name: str):
    """The default of field ``name`` of the dataclass ``schema`` (a fresh one for a default factory).

    >>> from reasonkit.eval.schema import EvalStage
    >>> schema_default(EvalStage, "max_new_tokens"), schema_default(EvalStage, "k")
    (256, [1])
    """
    field = _field(schema, name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    if field.default is dataclasses.MISSING:
        raise ValueError(f"{schema.__name__}.{name} has no default")
    return field.default


def schema_choices(schema: type, name: str) -> list:
    """The values the ``Literal`` type of field ``name`` of ``schema`` allows.

    >>> from reasonkit.eval.schema import BenchmarkSource
    >>> schema_choices(BenchmarkSource, "format")
    ['auto', 'gsm8k', 'math', 'code', 'plain']
    """
    _field(schema, name)
    values = typing.get_args(typing.get_type_hints(schema)[name])
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{schema.__name__}.{name} is not a Literal of strings")
    return list(values)


def _field(schema: type, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if name not in fields:
        raise ValueError(f"{schema.__name__} has no field {name!r}")
    return fields[name]


def add_format_option(cmd, what: str) -> None:
    """``--format``: the shape of the problems read (a ``BenchmarkSource``'s ``format``)."""
    cmd.add_argument(
        "--format",
        default=schema_default(BenchmarkSource, "format"),
        choices=schema_choices(BenchmarkSource, "format"),
        help=f"the {what}' shape (default: told apart by their columns)",
    )


def add_verifier_options(cmd, schema: type, default: str) -> None:
    """``--verifier`` and ``--completions`` of the commands that judge with a verifier (``eval``,
    ``generate``); ``schema`` holds the command's ``verifier_completions`` field."""
    cmd.add_argument(
        "--verifier",
        default=default,
        metavar="SPEC",
        help="the reward that judges answers: a built-in (math), package.module:function or file.py:function "
        "(default %(default)s)",
    )
    cmd.add_argument(
        "--completions",
        default=schema_default(schema, "verifier_completions"),
        choices=SHAPES,
        help="give the verifier text or conversational (message list) completions; auto: its annotation, "
        "else the prompts' shape, as for every reward (docs/rewards.md): text here, where the "
        "prompts are strings (default %(default)s)",
    )


def add_sampling_options(cmd, schema: type) -> None:
    """``--temperature``, ``--top-p`` and ``--max-new-tokens``, with ``schema``'s defaults."""
    cmd.add_argument(
        "--temperature",
        type=float,
        default=schema_default(schema, "temperature"),
        metavar="T",
        help="0 is greedy (default %(default)s)",
    )
    cmd.add_argument(
        "--top-p",
        type=float,
        default=schema_default(schema, "top_p"),
        metavar="P",
        help="(default %(default)s)",
    )
    cmd.add_argument(
        "--max-new-tokens",
        type=int,
        default=schema_default(schema, "max_new_tokens"),
        metavar="N",
        help="(default %(default)s)",
    )


def add_engine_option(cmd, default: str) -> None:
    cmd.add_argument(
        "--engine",
        default=default,
        help="auto (vLLM where it is installed, else transformers), vllm, transformers, or a class of "
        "your own as package.module:Class (default %(default)s)",
    )


def add_dtype_option(cmd, default: str) -> None:
    cmd.add_argument(
        "--dtype",
        default=default,
        choices=schema_choices(ModelConfig, "dtype"),
        help="(default %(default)s)",
    )


def add_seed_option(cmd, default: int) -> None:
    cmd.add_argument("--seed", type=int, default=default, help="(default %(default)s)")


def add_tool_options(cmd) -> None:
    """``--tool``, ``--environment-factory`` and ``--max-tool-calls``: the ``tools:`` section of a recipe's
    eval stage (``tools/settings.py``), for the commands that generate (``eval``, ``generate``)."""
    cmd.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="SPEC",
        help="a tool the model may call while it answers: a built-in (python, calculator), "
        "package.module:function or file.py:function; repeat for several",
    )
    cmd.add_argument(
        "--environment-factory",
        metavar="SPEC",
        help="TRL's environment_factory, one environment per completion: package.module:Class or file.py:Class",
    )
    cmd.add_argument(
        "--max-tool-calls",
        type=int,
        default=schema_default(ToolSettings, "max_calls"),
        metavar="N",
        help="tool calls per completion, at most (default %(default)s)",
    )


def tool_settings(args) -> ToolSettings | None:
    """The tools the command's flags name; None when they name none."""
    if not args.tool and args.environment_factory is None:
        return None
    return ToolSettings(
        functions=args.tool, environment_factory=args.environment_factory, max_calls=args.max_tool_calls
    )
