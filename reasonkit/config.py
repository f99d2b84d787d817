"""Recipe schema: typed and strict.

A recipe is one YAML file saying what to train: the model, the data, the stages (run in the order
written) and the output directory. Every field is documented once, here, next to its definition.
Loading fails before any model is touched when a key is unknown or misspelt (the message names the
file, the key and the closest valid key), a value has the wrong type, or a required field is missing.
Any field can be overridden from the command line as ``a.b.c=value`` (the value is read as YAML).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from reasonkit.engine_settings import VLLMServerSettings, VLLMSettings, check_engine
from reasonkit.errors import ReasonkitError


class ConfigError(ReasonkitError, ValueError):
    """A recipe that cannot run; the message says what to fix."""


@dataclass
class TinyModel:
    """A small model built on the spot (random init) with a tokenizer trained on the task's text."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4  # hidden_size / num_heads is the head dim; vLLM needs it >= 32
    intermediate_size: int = 512


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


@dataclass
class SFTStage:
    """Distillation: cross-entropy on the completion `<think>t</think>y` + EOS, prompt masked."""

    type: Literal["sft"] = "sft"
    init: str = "model"  # "model" (the recipe's model) or the name of an earlier stage to continue from
    traces: bool = True  # false: train on direct answers (x -> y), the baseline without reasoning
    learning_rate: float = 4e-5
    lr_scheduler: str = "cosine"  # a transformers scheduler name
    warmup_steps: int = 0  # linear warm-up from 0, with every schedule (constant too)
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    batch_size: int = 8  # per device
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int | None = None  # overrides num_epochs when set
    # Examples longer than this (prompt + completion + EOS, in tokens) are dropped, never truncated.
    max_length: int = 2048
    packing: bool = False  # refused when true: packing splits and mixes traces
    # Batches of examples of similar length (transformers' length-grouped sampler): less padding, so
    # faster when traces vary in length; batches are still drawn in random order.
    length_grouped: bool = False
    lora: LoRASettings | None = None  # null: full fine-tuning
    logging_steps: int = 10
    save_steps: int | None = None  # null: save at the end only
    seed: int | None = None  # null: the recipe's seed


@dataclass
class BenchmarkSource:
    """A benchmark from a local file or hub id: gsm8k (question/answer with ####), math (problem/solution
    with \\boxed{}) or plain (prompt/answer) shape; auto tells them apart by their columns."""

    path: str
    name: str | None = None  # in the results; null: the file's stem
    format: Literal["auto", "gsm8k", "math", "code", "plain"] = "auto"
    split: str = "test"  # hub datasets
    subset: str | None = None
    difficulty_column: str | None = None  # results per value of this column; null: `level` when present
    max_rows: int | None = None


@dataclass
class EvalStage:
    """pass@k and maj@k with confidence intervals, answers judged by a reward verifier."""

    type: Literal["eval"] = "eval"
    # What to evaluate: earlier stages' outputs, and/or "model" (the recipe's model as loaded).
    # Empty: every earlier training stage.
    models: list[str] = field(default_factory=list)
    benchmarks: list[BenchmarkSource] = field(default_factory=list)  # empty: the recipe's test data
    # The reward that judges an answer correct (score 1.0); null: the one the recipe's GRPO stage
    # judges accuracy with (math when it trains with math), else exact_answer.
    verifier: str | None = None
    # How the verifier reads completions: auto (its annotation, else text: benchmark prompts are strings),
    # text, or conversational (messages, as TRL's and open-r1's rewards read them).
    verifier_completions: Literal["auto", "text", "conversational"] = "auto"
    num_samples: int = 1  # n completions per problem: pass@1 is averaged over them
    k: list[int] = field(default_factory=lambda: [1])  # pass@k and maj@k for each k <= num_samples
    confidence: float = 0.95  # of the bootstrap intervals (over problems)
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 128  # completions (problems x num_samples) per generate call (transformers engine)
    max_problems: int | None = None
    seed: int | None = None
    engine: str = "auto"  # as in a GRPO stage: auto, vllm, transformers or a class of your own
    vllm: VLLMSettings = field(default_factory=VLLMSettings)


@dataclass
class RewardSpec:
    # a registry name (`reasonkit rewards list`), package.module:function or path/to/file.py:function
    name: str
    weight: float = 1.0
    # Keyword arguments bound to the function, or passed to it when it is a factory (TRL's get_* rewards).
    args: dict[str, Any] = field(default_factory=dict)
    # How completions reach it: text, or conversational (messages, as TRL's and open-r1's rewards read them);
    # auto: as its `completions` annotation says, else conversational when the prompts are message lists.
    completions: Literal["auto", "text", "conversational"] = "auto"


@dataclass
class GRPOStage:
    """GRPO: sample G completions per prompt, score them, and follow the group-relative advantage.

    Per token: -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) + β·KL(π_θ‖π_ref), ρ = π_θ / π_old.
    """

    type: Literal["grpo"] = "grpo"
    # "model" or the name of an earlier stage to continue from
    init: str = "model"

    # Sampling
    # B, over all processes: each process samples B / (number of processes) of them
    prompts_per_step: int = 16
    # G, completions per prompt
    num_generations: int = 8
    # > 0: the trainer's log-probs are of logits / temperature
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    # Rewards
    # Summed with their weights; a reward returning None does not apply.
    rewards: list[RewardSpec] = field(default_factory=list)
    # Rewards run in worker processes, one completion per call: null = one per CPU (at most 8), 0 = in
    # this process without time limits (debugging). A call over reward_timeout seconds fails.
    reward_workers: int | None = None
    reward_timeout: float = 30.0
    # A completion a reward failed on (raised, timed out, crashed): "exclude" leaves it out of the loss
    # and of its group's mean and std, as if never sampled (a slow but right answer is not punished);
    # "zero" scores it 0 like any other.
    on_reward_failure: Literal["exclude", "zero"] = "exclude"
    # How the `accuracy` metric judges answers; null: math when a reward uses math, else exact_answer.
    accuracy_verifier: Literal["exact_answer", "math"] | None = None

    # Objective (the names are those of the registries in reasonkit/algorithms/)
    # none: Dr. GRPO (no std division)
    advantage_scale: Literal["group", "batch", "none"] = "group"
    loss_aggregation: Literal["sequence_mean", "token_mean", "constant"] = "sequence_mean"
    epsilon_low: float = 0.2
    # > epsilon_low: DAPO's clip-higher
    epsilon_high: float = 0.2
    # KL coefficient, >= 0; 0 drops the reference model
    beta: float = 0.04
    # k3 (DeepSeekMath, TRL) or k2; what each optimises: reasonkit/algorithms/losses.py. k1 is refused:
    # as a loss term its expected gradient is zero.
    kl_estimator: str = "k3"
    # μ >= 1: optimisation passes over each batch (>1 computes old log-probs)
    num_iterations: int = 1
    # DAPO's overlong filtering: completions cut at max_new_tokens are left out of the loss (they still
    # count in their group's mean and std).
    mask_truncated: bool = False
    # With beta = 0 a completion whose advantage is 0 has no gradient: skip its forward passes. An
    # optimisation only: the losses are normalised over the whole batch, so the update is the same.
    skip_zero_advantage: bool = True

    # Optimiser (AdamW, float32 state; see reasonkit/precision.py)
    # optimisation steps: one batch of B*G completions each, times num_iterations optimizer steps
    max_steps: int = 100
    learning_rate: float = 1e-6
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    # linear warm-up from 0, with every schedule (constant too)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    max_grad_norm: float = 1.0
    # null: full fine-tuning; with LoRA the KL reference is the adapter-free model
    lora: LoRASettings | None = None
    # How a micro-batch's sequences go through the model. packed: concatenated into one row, no padding,
    # fast only with a varlen attention kernel (flash_attention_2); padded: a row per sequence, grouped
    # by length, fast with any kernel. auto: packed with flash_attention_2, else padded.
    micro_batch_layout: Literal["auto", "packed", "padded"] = "auto"
    # Tokens per micro-batch forward, padding included. null: 16384 packed with flash_attention_2, else
    # 1024 packed (attention over a packed row costs the square of its length); padded 8192 on GPUs, on
    # CPUs 2^18 / hidden size, at least 256 (cache-sized: measured fastest there).
    token_budget: int | None = None

    # Engine
    # auto: vLLM where it is installed, else transformers; vllm_server: vLLM servers of their own
    # (vllm_server.urls); or a class of your own, package.module:Class or path/to/file.py:Class
    # (reasonkit/rollout/base.py says what it must do).
    engine: str = "auto"
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    vllm_server: VLLMServerSettings = field(default_factory=VLLMServerSettings)
    # 1: the next batch is generated while this one trains (one-step-off-policy), sampled whole by the
    # weights of one update earlier (the importance weights below correct for it); engines that generate
    # apart from the trainer (vllm_server) only. 0: generate, then train.
    async_rollouts: int = 0
    # completions (prompts x num_generations) per generate call (transformers engine); at least one
    # prompt's G. What a call holds in memory.
    generation_batch_size: int = 256
    # The sampler's and trainer's log-probs differ (kernels, precision): weight each token's loss by
    # min(π_trainer/π_sampler, importance_cap); null turns the correction off. Engines with their own
    # weights (vLLM) only.
    importance_cap: float | None = 2.0
    # sequence: a length-normalised ratio per completion
    importance_level: Literal["token", "sequence"] = "token"

    # Bookkeeping
    logging_steps: int = 1
    # A column of the prompt data with a few values (the arithmetic task's `style`, MATH's `level`): reward
    # and accuracy are also logged per value, as `reward/mean/<column>=<value>` and
    # `accuracy/<column>=<value>`, drawn in curves.png beside the whole batch's, and summarised per value.
    metrics_by: str | None = None
    # checkpoint (model, optimizer, scheduler, RNG, data position) every N steps
    save_steps: int = 50
    # null: the recipe's seed
    seed: int | None = None


class Stage:
    """Any stage type's recipe section: the schema its entry in the stage table names (reasonkit.stages)."""


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


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read, override and check a recipe; raises ConfigError listing every problem found."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of keys, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return build_recipe(raw, source=str(path))


def build_section(cls: type, raw: Any, source: str, what: str, check=lambda built: []) -> Any:
    """``raw`` as the schema class ``cls`` (``what``: a recipe, a stage's saved settings), one error for all."""
    errors: list[str] = []
    built = _build(cls, raw, "", errors)
    errors += [] if errors else check(built)
    if errors:
        listing = "\n".join(f"  - {e}" for e in errors)
        raise ConfigError(f"{source}: {len(errors)} problem(s) in {what}:\n{listing}")
    return built


def build_recipe(raw: dict, source: str = "<recipe>") -> Recipe:
    return build_section(Recipe, raw, source, "the recipe", _check_recipe)


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


def _check_recipe(recipe: Recipe) -> list[str]:
    from reasonkit.stages import stage_type

    errors = []
    model, data = recipe.model, recipe.data
    uses_lm = any(stage_type(s.type).language_model for s in recipe.stages.values()) or not recipe.stages
    if uses_lm and (model.path is None) == (model.tiny is None):
        errors.append("model: give exactly one of 'path' (hub id or local directory) and 'tiny'")
    if uses_lm and (data.task is None) == (data.train is None):
        errors.append("data: give exactly one of 'task' (built-in) and 'train' (a dataset)")
    for key in ("quick_share", "shortcut_rate"):
        if not 0 <= getattr(data.arithmetic, key) <= 1:
            errors.append(
                f"data.arithmetic.{key}: {getattr(data.arithmetic, key)} is a share, between 0 and 1"
            )
    if not recipe.stages:
        errors.append("stages: a recipe needs at least one stage")
    trained: list[str] = []  # earlier stages that produce a model
    for name, stage in recipe.stages.items():
        entry = stage_type(stage.type)
        if entry.trains and stage.init != "model" and stage.init not in trained:
            errors.append(
                f"stages.{name}.init: {stage.init!r} is not 'model' nor an earlier training stage ({trained})"
            )
        if entry.validate is not None:
            errors += entry.validate(name, stage, recipe, trained)
        if entry.trains:
            trained.append(name)
    return errors


def check_sft(name: str, stage: SFTStage, recipe: Recipe, trained: list[str]) -> list[str]:
    if not stage.packing:
        return []
    return [
        f"stages.{name}.packing: packing is not supported: it splits traces and mixes several into one "
        "sequence, which teaches wrong endings. Remove it or set it to false."
    ]


def check_eval(name: str, stage: EvalStage, recipe: Recipe, trained: list[str]) -> list[str]:
    errors = []
    for target in stage.models:
        if target != "model" and target not in trained:
            errors.append(
                f"stages.{name}.models: {target!r} is not 'model' nor an earlier training stage ({trained})"
            )
    if not stage.models and not trained:
        errors.append(
            f"stages.{name}: nothing to evaluate; list models: [model] or put it after a training stage"
        )
    if recipe.data.task is None and recipe.data.test is None and not stage.benchmarks:
        errors.append(f"stages.{name}: an eval stage needs benchmarks, data.test or a built-in data.task")
    return errors + check_eval_stage(name, stage)


def check_eval_stage(name: str, stage: EvalStage) -> list[str]:
    """Eval settings that cannot work (also checked for `reasonkit eval`, which has no recipe)."""
    import rewards

    errors = []
    too_large = [k for k in stage.k if not 1 <= k <= stage.num_samples]
    if too_large:
        errors.append(
            f"stages.{name}.k: {too_large} outside 1..num_samples={stage.num_samples}; "
            f"raise num_samples to {max(too_large)} or drop them"
        )
    if stage.num_samples > 1 and stage.temperature == 0:
        errors.append(
            f"stages.{name}: num_samples={stage.num_samples} with temperature 0 repeats one greedy answer"
        )
    if stage.verifier is not None:
        try:
            rewards.get(stage.verifier)
        except rewards.RewardNotFound as exc:
            errors.append(f"stages.{name}.verifier: {exc}")
    return errors + check_engine(f"stages.{name}.engine", stage.engine)


def check_grpo(name: str, stage: GRPOStage, recipe: Recipe, trained: list[str]) -> list[str]:
    import rewards  # light: rewards import nothing from the trainers

    errors = []
    if recipe.model.dtype == "float16":
        errors.append(
            f"stages.{name}: model.dtype float16 cannot train GRPO (it needs loss scaling, which the GRPO "
            "loop does not do); use bfloat16"
        )
    if not stage.rewards:
        errors.append(
            f"stages.{name}.rewards: a GRPO stage needs at least one reward, e.g. [{{name: exact_answer}}]"
        )
    for i, spec in enumerate(stage.rewards):
        try:
            fn = rewards.get(spec.name)
        except rewards.RewardNotFound as exc:
            errors.append(f"stages.{name}.rewards[{i}].name: {exc}")
            continue
        valid = rewards.argument_names(fn)
        for key in spec.args:
            if key not in valid:
                errors.append(_unknown_key(f"stages.{name}.rewards[{i}].args", key, valid))
        missing = rewards.registry.missing_factory_args(fn, spec.args)
        if missing:
            errors.append(
                f"stages.{name}.rewards[{i}].args: {spec.name} is a reward factory; give it {missing}"
            )
    if stage.num_generations < 2:
        errors.append(f"stages.{name}.num_generations: needs at least 2 completions per prompt to compare")
    if stage.epsilon_low < 0 or stage.epsilon_high < 0:
        errors.append(f"stages.{name}: epsilon_low and epsilon_high must be >= 0")
    if stage.temperature <= 0:
        errors.append(
            f"stages.{name}.temperature: {stage.temperature}; GRPO samples, and its log-probs divide the "
            "logits by the temperature: use a value > 0 (1.0 samples the model as it is)"
        )
    if stage.num_iterations < 1:
        errors.append(
            f"stages.{name}.num_iterations: {stage.num_iterations}; at least 1 pass over each batch"
        )
    if stage.importance_cap is not None and stage.importance_cap <= 0:
        errors.append(
            f"stages.{name}.importance_cap: {stage.importance_cap} would zero every token's loss; use a "
            "positive value (2.0 is usual) or null to turn the correction off"
        )
    if stage.beta < 0:
        errors.append(f"stages.{name}.beta: {stage.beta}; the KL coefficient is >= 0 (0 drops the KL term)")
    errors += _check_kl_estimator(name, stage.kl_estimator)
    errors += check_engine(f"stages.{name}.engine", stage.engine, async_rollouts=stage.async_rollouts)
    return errors


def _check_kl_estimator(name: str, estimator: str) -> list[str]:
    from reasonkit.algorithms import KL_ESTIMATORS

    if estimator == "k1":
        return [
            f"stages.{name}.kl_estimator: k1 as a loss term has zero expected gradient (beta would do "
            "nothing); use k3 (the gradient of KL(ref || policy), as DeepSeekMath and TRL) or k2 (of "
            "KL(policy || ref))"
        ]
    if estimator not in KL_ESTIMATORS:
        return [f"stages.{name}.kl_estimator: {estimator!r} is not one of {list(KL_ESTIMATORS)}"]
    return []


def _build(cls: Any, raw: Any, where: str, errors: list[str]) -> Any:
    """Build ``cls`` from raw YAML data, appending every problem to ``errors``."""
    origin = typing.get_origin(cls)
    if cls is Stage:
        return _build_stage(raw, where, errors)
    if origin in (Union, types.UnionType):
        options = typing.get_args(cls)
        if raw is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _build(inner, raw, where, errors)
    if dataclasses.is_dataclass(cls):
        return _build_dataclass(cls, raw, where, errors)
    if origin is list:
        if not isinstance(raw, list):
            errors.append(f"{where}: expected a list, got {raw!r}")
            return []
        (item_type,) = typing.get_args(cls)
        return [_build(item_type, v, f"{where}[{i}]", errors) for i, v in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, dict):
            errors.append(f"{where}: expected a mapping, got {raw!r}")
            return {}
        _, value_type = typing.get_args(cls)
        return {str(k): _build(value_type, v, f"{where}.{k}", errors) for k, v in raw.items()}
    if origin is Literal:
        choices = typing.get_args(cls)
        if raw not in choices:
            errors.append(f"{where}: {raw!r} is not one of {list(choices)}")
        return raw
    if cls is Any:
        return raw
    return _build_scalar(cls, raw, where, errors)


def _build_scalar(cls: type, raw: Any, where: str, errors: list[str]) -> Any:
    if cls is float and isinstance(raw, str):
        try:  # YAML 1.1 reads `1e-5` (no dot) as a string
            return float(raw)
        except ValueError:
            pass
    if cls is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, cls) and not (cls is int and isinstance(raw, bool)):
        return raw
    errors.append(f"{where}: expected {cls.__name__}, got {raw!r} ({type(raw).__name__})")
    return raw


def _build_dataclass(cls: type, raw: Any, where: str, errors: list[str]) -> Any:
    if not isinstance(raw, dict):
        errors.append(f"{where or 'recipe'}: expected a mapping, got {raw!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            errors.append(_unknown_key(where, str(key), list(fields)))
    values = {}
    for name, f in fields.items():
        key_path = f"{where}.{name}" if where else name
        if name in raw:
            values[name] = _build(hints[name], raw[name], key_path, errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{key_path}: required field is missing")
    try:
        return cls(**values)
    except TypeError:
        return None  # already reported as missing fields


def _build_stage(raw: Any, where: str, errors: list[str]) -> Any:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a stage mapping, got {raw!r}")
        return None
    from reasonkit.stages import STAGES

    name = where.rsplit(".", 1)[-1]
    kind = raw.get("type", name if name in STAGES else None)
    if kind not in STAGES:
        errors.append(f"{where}.type: {kind!r} is not a stage type; choose one of {list(STAGES)}")
        return None
    return _build_dataclass(STAGES[kind].schema, {**raw, "type": kind}, where, errors)


def _unknown_key(where: str, key: str, valid: list[str]) -> str:
    key_path = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"{key_path}: unknown key; {hint}"
