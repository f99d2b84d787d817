"""Recipe schema: what every recipe has (model, data, output), and the strict builder.

A recipe is one YAML file saying what to train: the model, the data, the stages (run in the order
written) and the output directory. Every field is documented once, next to its definition: here for
the sections every recipe has, in each stage package's ``schema.py`` for its stage type's section.
Reading a recipe (``reasonkit.recipe``) fails before any model is touched when a key is unknown or
misspelt (the message names the file, the key and the closest valid key), a value has the wrong type,
or a required field is missing.
Any field can be overridden from the command line as ``a.b.c=value`` (the value is read as YAML).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import yaml

from reasonkit.errors import ReasonkitError
from reasonkit.recurrent.schema import RecurrentLayout


class ConfigError(ReasonkitError, ValueError):
    """A recipe that cannot run; the message says what to fix."""


@dataclass
class TinyModel:
    """A small model built on the spot (random init) with a tokenizer trained on the task's text."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4  # hidden_size / num_heads is the head dim; vLLM needs it >= 32
    intermediate_size: int = 512
    recurrent: RecurrentLayout | None = None  # recurrent depth (prelude, shared core iterated r times, coda)


@dataclass
class ModelConfig:
    path: str | None = None  # a hub id or a local directory saved with save_pretrained
    tiny: TinyModel | None = None  # build a tiny model instead of loading `path` (tests, the demo)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    # Whether the prompt ends with an opened <think> tag. null: detect it from the chat template;
    # true: open it ourselves when the template does not (a model that needs the prefill).
    think_prefill: bool | None = None


@dataclass
class ArithmeticTask:
    """Built-in multiplication problems with a programmatic teacher's traces (no download)."""

    digits: int = 2  # digits of each operand
    test_size: int = 500  # held-out problems, disjoint from the training ones
    rl_size: int = 0  # problems kept apart as GRPO prompts (the `rl` split), seen by no SFT stage
    train_size: int | None = None  # null: every other problem of that size
    seed: int = 0  # fixes which problems are held out, independently of the training seed
    # A share of the problems is asked as a quick question ("Quick: what is 27 * 34?"), and the teacher
    # answers shortcut_rate of those at once, without the working: its traces are all correct, but a
    # student that copies the habit cannot multiply in its head.
    quick_share: float = 0.0
    shortcut_rate: float = 0.7


@dataclass
class DatasetSource:
    """(x, t, y) rows from a local jsonl/json/parquet file or a hub dataset id."""

    path: str
    split: str = "train"
    subset: str | None = None  # the hub dataset's configuration name
    prompt_column: str = "prompt"
    trace_column: str = "trace"
    answer_column: str = "answer"
    # Read prompt, trace and answer from a chat column instead: the user turn is the prompt, the
    # assistant turn is parsed by the format contract (or uses its `reasoning_content`).
    messages_column: str | None = None
    max_rows: int | None = None


@dataclass
class DataConfig:
    task: Literal["arithmetic"] | None = None  # a built-in task; or give `train` (and `test`)
    arithmetic: ArithmeticTask = field(default_factory=ArithmeticTask)
    train: DatasetSource | None = None
    test: DatasetSource | None = None
    rl: DatasetSource | None = None  # GRPO prompts; null: the train split
    on_invalid: Literal["error", "skip"] = "error"  # rows with an empty prompt, trace or answer


@dataclass
class LoRASettings:
    """Train low-rank adapters (peft) instead of every weight. The stage saves the adapter in `model/`
    (later stages and evaluation load it merged onto its base) and, with save_merged, full weights in `merged/`."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])  # module names, or all-linear
    save_merged: bool = False


def lora_summary(settings: LoRASettings | None) -> str | None:
    """The objective manifest's line for LoRA training (None: every weight is trained)."""
    if settings is None:
        return None
    targets = ", ".join(settings.target_modules)
    return f"LoRA adapters r={settings.r} alpha={settings.alpha} dropout={settings.dropout} on {targets}"


class Stage:
    """Any stage type's recipe section: the schema its entry in the stage table names (``reasonkit.stages``)."""


@dataclass
class Recipe:
    output_dir: str
    # The language model and its (x, t, y) data; stages that train their own network (trm) need neither.
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: dict[str, Stage] = field(default_factory=dict)
    seed: int = 0
    # Where metrics go besides curves.png; wandb: one run per stage, with the recipe, objective and summary.
    report_to: list[Literal["tensorboard", "jsonl", "wandb"]] = field(
        default_factory=lambda: ["tensorboard", "jsonl"]
    )


def build_section(
    cls: type,
    raw: Any,
    source: str,
    what: str,
    check: Callable[[Any], list[str]] = lambda built: [],
    stage_schemas: Mapping[str, type] | None = None,
) -> Any:
    """``raw`` as the schema class ``cls`` (``what``: a recipe, a stage's saved settings), one error for all.

    ``stage_schemas``: each stage type's schema, by type name, for sections typed ``Stage``.
    """
    builder = _Builder(stage_schemas or {})
    built = builder.build(cls, raw, "")
    errors = builder.errors or check(built)
    if errors:
        listing = "\n".join(f"  - {e}" for e in errors)
        raise ConfigError(f"{source}: {len(errors)} problem(s) in {what}:\n{listing}")
    return built


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``a.b.c=value`` override to the raw mapping (the schema check comes after)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[leaf] = yaml.safe_load(value)


def to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (saved next to every checkpoint)."""
    return dataclasses.asdict(recipe)


class _Builder:
    """Builds schema classes from raw YAML data, collecting every problem in ``errors``."""

    def __init__(self, stage_schemas: Mapping[str, type]):
        self.stage_schemas = stage_schemas
        self.errors: list[str] = []

    def build(self, cls: Any, raw: Any, where: str) -> Any:
        errors = self.errors
        origin = typing.get_origin(cls)
        if cls is Stage:
            return self.build_stage(raw, where)
        if origin in (Union, types.UnionType):
            options = typing.get_args(cls)
            if raw is None and type(None) in options:
                return None
            inner = [o for o in options if o is not type(None)]
            if len(inner) == 1:
                return self.build(inner[0], raw, where)
            return self.build_either(inner, raw, where)
        if dataclasses.is_dataclass(cls):
            return self.build_dataclass(cls, raw, where)
        if origin is list:
            if not isinstance(raw, list):
                errors.append(f"{where}: expected a list, got {raw!r}")
                return []
            (item_type,) = typing.get_args(cls)
            return [self.build(item_type, v, f"{where}[{i}]") for i, v in enumerate(raw)]
        if origin is dict:
            if not isinstance(raw, dict):
                errors.append(f"{where}: expected a mapping, got {raw!r}")
                return {}
            _, value_type = typing.get_args(cls)
            return {str(k): self.build(value_type, v, f"{where}.{k}") for k, v in raw.items()}
        if origin is Literal:
            choices = typing.get_args(cls)
            if raw not in choices:
                errors.append(f"{where}: {raw!r} is not one of {list(choices)}")
            return raw
        if cls is Any:
            return raw
        return self.build_scalar(cls, raw, where)

    def build_either(self, options: list, raw: Any, where: str) -> Any:
        """``raw`` as the first of ``options`` it fits (``str | dict[str, str]``: a name, or names by key)."""
        for option in options:
            trial = _Builder(self.stage_schemas)
            built = trial.build(option, raw, where)
            if not trial.errors:
                return built
        names = " or ".join(getattr(o, "__name__", None) or str(o) for o in options)
        self.errors.append(f"{where}: expected {names}, got {raw!r} ({type(raw).__name__})")
        return raw

    def build_scalar(self, cls: type, raw: Any, where: str) -> Any:
        if cls is float and isinstance(raw, str):
            try:  # YAML 1.1 reads `1e-5` (no dot) as a string
                return float(raw)
            except ValueError:
                pass
        if cls is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, cls) and not (cls is int and isinstance(raw, bool)):
            return raw
        self.errors.append(f"{where}: expected {cls.__name__}, got {raw!r} ({type(raw).__name__})")
        return raw

    def build_dataclass(self, cls: type, raw: Any, where: str) -> Any:
        if not isinstance(raw, dict):
            self.errors.append(f"{where or 'recipe'}: expected a mapping, got {raw!r}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                self.errors.append(unknown_key(where, str(key), list(fields)))
        values = {}
        for name, f in fields.items():
            key_path = f"{where}.{name}" if where else name
            if name in raw:
                values[name] = self.build(hints[name], raw[name], key_path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.errors.append(f"{key_path}: required field is missing")
        try:
            return cls(**values)
        except TypeError:
            return None  # already reported as missing fields

    def build_stage(self, raw: Any, where: str) -> Any:
        if not isinstance(raw, dict):
            self.errors.append(f"{where}: expected a stage mapping, got {raw!r}")
            return None
        name = where.rsplit(".", 1)[-1]
        kind = raw.get("type", name if name in self.stage_schemas else None)
        if kind not in self.stage_schemas:
            self.errors.append(
                f"{where}.type: {kind!r} is not a stage type; choose one of {list(self.stage_schemas)}"
            )
            return None
        return self.build_dataclass(self.stage_schemas[kind], {**raw, "type": kind}, where)


def unknown_key(where: str, key: str, valid: list[str]) -> str:
    key_path = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"{key_path}: unknown key; {hint}"
