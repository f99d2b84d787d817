"""The ``type: latent`` section of a recipe: the continuous-thought curriculum, how it trains, and what
makes one that cannot run (found at ``validate``, before any model is loaded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reasonkit.config import LoRASettings, Recipe, lora_summary

# Engines that cannot feed a hidden state back as the next input (a latent model's thoughts).
NO_FEEDBACK_ENGINES = ("vllm", "vllm_server")


@dataclass
class LatentEval:
    """Held-out accuracy and generated tokens after each curriculum stage (the recipe's test data)."""

    every_stage: bool = True  # false: only after the last stage
    max_problems: int | None = None  # null: every test problem
    max_new_tokens: int = 256
    batch_size: int = 128
    # Test problems whose thoughts are decoded to their nearest tokens (thoughts.json, thoughts.png).
    diagnose_problems: int = 100


@dataclass
class LatentStage:
    """Continuous thought (Coconut): stage k replaces the trace's first k steps by k*c thoughts."""

    type: Literal["latent"] = "latent"
    init: str = "model"  # an earlier stage to continue from: usually the distilled (sft) one
    # continuous: each thought is the last hidden state fed back. pause: the same positions hold a
    # learned pause token (no feedback): the baseline with the extra positions but no latent reasoning.
    thoughts: Literal["continuous", "pause"] = "continuous"
    # How a trace is cut into steps: a name from reasonkit/latent/splitters.py (sentences, lines) or
    # package.module:function / path/to/file.py:function taking the trace, returning its steps.
    splitter: str = "sentences"
    thoughts_per_step: int = 1  # c
    max_stage: int = 3  # curriculum stages 1..max_stage; the last is what the saved model thinks
    # Continue the curriculum of the latent stage named in `init`, which ran stages 1..first_stage-1 with
    # the same thoughts: run first_stage..max_stage. A stage's batches depend only on its number and the step
    # within it, so with reset_optimizer this trains what one stage running 1..max_stage would, and the
    # model after stage first_stage-1 is kept (a GRPO stage can start from it).
    first_stage: int = 1
    steps_per_stage: int = 1000  # optimizer steps of each curriculum stage
    # A share of each batch trained at a uniformly drawn earlier stage (0..k-1), so earlier stages are not
    # forgotten (the reference's issues suggest ~5%).
    mix_earlier: float = 0.0
    # Rescale each fed-back state to the input embeddings' mean norm (against growing latent norms).
    normalise_thoughts: bool = False
    reset_optimizer: bool = True  # a fresh AdamW (and schedule) at each curriculum stage, as the reference

    # Optimiser: AdamW, float32 master weights
    learning_rate: float = 1e-4
    lr_scheduler: Literal["constant", "cosine"] = "constant"  # over each curriculum stage
    warmup_steps: int = 0  # linear warm-up at the start of each curriculum stage
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    batch_size: int = 32  # rows per optimizer step over all processes (the reference found it matters)
    max_length: int = 2048  # rows longer than this (tokens, thoughts included) are dropped, never cut
    lora: LoRASettings | None = None  # the saved model holds the merged weights (its vocabulary grew)

    eval: LatentEval = field(default_factory=LatentEval)
    logging_steps: int = 10
    save_steps: int | None = None  # checkpoint every N steps (and at each stage's end); null: none
    seed: int | None = None  # null: the recipe's seed


def inference_thoughts(stage: LatentStage) -> int:
    """Thoughts the saved model thinks before writing: those of the last curriculum stage.

    >>> inference_thoughts(LatentStage(max_stage=3, thoughts_per_step=2))
    6
    """
    return stage.max_stage * stage.thoughts_per_step


def validate(name: str, stage: LatentStage, recipe: Recipe, trained: list[str]) -> list[str]:
    """Settings that cannot work, and later stages that would run this model where it cannot think."""
    where = f"stages.{name}"
    errors = []
    for key in ("thoughts_per_step", "max_stage", "steps_per_stage", "batch_size", "logging_steps"):
        if getattr(stage, key) < 1:
            errors.append(f"{where}.{key}: at least 1")
    errors += _check_continuation(name, stage, recipe)
    if not 0 <= stage.mix_earlier <= 1:
        errors.append(f"{where}.mix_earlier: {stage.mix_earlier} is a share, between 0 and 1")
    if stage.thoughts == "pause" and stage.normalise_thoughts:
        errors.append(f"{where}.normalise_thoughts: pause tokens feed no state back; remove it")
    errors += _check_splitter(where, stage.splitter)
    errors += _later_engines(name, recipe)
    if stage.init == "model" and recipe.model.path is not None:
        errors += check_model(recipe.model.path, where)
    return errors


def _check_continuation(name: str, stage: LatentStage, recipe: Recipe) -> list[str]:
    """``first_stage`` > 1 continues the latent stage named in ``init``, which must have stopped at the stage
    before, with the same thoughts."""
    where = f"stages.{name}.first_stage"
    if not 1 <= stage.first_stage <= stage.max_stage:
        return [f"{where}: {stage.first_stage} must be between 1 and max_stage ({stage.max_stage})"]
    if stage.first_stage == 1:
        return []
    earlier = recipe.stages.get(stage.init)
    if getattr(earlier, "type", None) != "latent":
        return [
            f"{where}: {stage.first_stage} continues a latent stage's curriculum, but init {stage.init!r} is "
            "not a latent stage of this recipe; set init to the latent stage that ran the stages before"
        ]
    problems = [f"stops at stage {earlier.max_stage}"] if earlier.max_stage != stage.first_stage - 1 else []
    same = ("thoughts", "thoughts_per_step", "splitter", "normalise_thoughts")
    differ = [key for key in same if getattr(earlier, key) != getattr(stage, key)]
    problems += [f"has another {', '.join(differ)}"] if differ else []
    if problems:
        return [
            f"{where}: {stage.first_stage} continues stages.{stage.init}, which {' and '.join(problems)}; "
            f"it must stop at stage {stage.first_stage - 1} with the same thoughts"
        ]
    return []


def _check_splitter(where: str, splitter: str) -> list[str]:
    from reasonkit.latent.splitters import SPLITTERS
    from reasonkit.plugins import PluginNotFound

    try:
        SPLITTERS.resolve(splitter)
    except PluginNotFound as exc:
        return [f"{where}.splitter: {exc}"]
    return []


def _later_engines(name: str, recipe: Recipe) -> list[str]:
    """Later stages that would run this model, or a GRPO stage's continuation of it (latent too), where it
    cannot think: an eval or GRPO stage on an engine that cannot feed a hidden state back, and any other
    training stage continuing from it (SFT would train it without its thoughts)."""
    errors, latent, seen = [], {name}, False
    for other, section in recipe.stages.items():
        if other == name:
            seen = True
            continue
        if not seen:
            continue
        init = getattr(section, "init", None)
        if init in latent and section.type == "grpo":
            errors += _grpo_on_latent(other, section, init)
            latent.add(other)
        elif init in latent and section.type != "latent":
            errors.append(
                f"stages.{other}.init: {init!r} is a latent model; a {section.type} stage would run it without "
                "its thoughts (only eval, grpo and further latent stages can continue from it)"
            )
        elif section.type == "eval" and section.engine in NO_FEEDBACK_ENGINES:
            for model in sorted(latent if not section.models else latent & set(section.models)):
                errors.append(_engine_refused(f"stages.{other}.engine", section.engine, model))
    return errors


def _engine_refused(where: str, engine: str, name: str) -> str:
    return (
        f"{where}: {engine} cannot run {name!r}, a latent model: its thoughts feed the model's last hidden "
        "state back as the next input, which vLLM cannot do. Use engine: transformers (or auto, which a "
        "latent model runs on transformers)"
    )


def _grpo_on_latent(where_name: str, section, name: str) -> list[str]:
    """What a GRPO stage continuing from a latent model cannot do: sample on vLLM, lay its micro-batches out
    packed (the thought chain's layout is padded), or call tools (a turn after a tool's result would need
    thoughts of its own)."""
    where = f"stages.{where_name}"
    errors = []
    if section.engine in NO_FEEDBACK_ENGINES:
        errors.append(_engine_refused(f"{where}.engine", section.engine, name))
    if section.micro_batch_layout == "packed":
        errors.append(
            f"{where}.micro_batch_layout: packed; a latent model's log-probs run its chain of thoughts on "
            "left-padded prompts (padded). Use auto or padded"
        )
    if section.tools is not None:
        errors.append(
            f"{where}.tools: tool calls are not supported on a latent model ({name!r}) yet; remove them"
        )
    return errors


def check_model(path: str, where: str) -> list[str]:
    """A model that cannot think latently: its class takes no ``inputs_embeds``, or its tokenizer cannot
    take the thought tokens. Reads the config and tokenizer only (no weights)."""
    import inspect

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from reasonkit.latent.thoughts import THOUGHT_TOKENS

    try:
        config = AutoConfig.from_pretrained(path)
        model_class = AutoModelForCausalLM._model_mapping[type(config)]
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - the model's own loading reports it again, in full
        return [
            f"{where}: could not read {path!r} to check it can think latently: {type(exc).__name__}: {exc}"
        ]
    errors = []
    if "inputs_embeds" not in inspect.signature(model_class.forward).parameters:
        errors.append(
            f"{where}: {model_class.__name__} ({path}) takes no inputs_embeds, so no hidden state can be fed "
            "back as an input; use a causal LM of transformers whose forward accepts inputs_embeds"
        )
    errors += check_tokenizer(tokenizer, where, THOUGHT_TOKENS)
    return errors


def check_tokenizer(tokenizer, where: str, tokens) -> list[str]:
    """The thought tokens must become single new tokens that text cannot produce."""
    try:
        tokenizer.add_tokens([t for t in tokens if t not in tokenizer.get_vocab()], special_tokens=True)
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in tokens]
    except Exception as exc:  # noqa: BLE001 - a tokenizer class without added tokens
        return [
            f"{where}: the tokenizer cannot take the thought tokens {list(tokens)}: {type(exc).__name__}: {exc}"
        ]
    split = [t for t, i in zip(tokens, ids) if len(i) != 1]
    if split:
        return [
            f"{where}: the tokenizer does not keep {split} as single tokens after adding them; use a "
            "(fast) tokenizer that supports added special tokens"
        ]
    return []


def objective(stage: LatentStage) -> dict:
    """What the stage optimises, as recorded in the model's manifest."""
    c = stage.thoughts_per_step
    return {
        "method": f"latent ({stage.thoughts}): Coconut curriculum (Hao et al. 2024)",
        "curriculum": f"stages {stage.first_stage}..{stage.max_stage}: the trace's first k steps replaced by "
        f"k*{c} thoughts, {stage.steps_per_stage} steps each, optimizer {'reset' if stage.reset_optimizer else 'kept'} per stage, "
        f"{stage.mix_earlier:.0%} of rows at an earlier stage",
        "thoughts": "last hidden state fed back as the next input embedding, gradient through the whole chain"
        + (", rescaled to the embeddings' mean norm" if stage.normalise_thoughts else "")
        if stage.thoughts == "continuous"
        else "a learned pause token at each thought position (no feedback)",
        "loss": "cross-entropy on the tokens after <|eot|> (rest of the trace, answer, EOS), mean over the "
        "batch's tokens",
        "splitter": stage.splitter,
        "inference_thoughts": inference_thoughts(stage),
        "optimizer": f"AdamW lr {stage.learning_rate} ({stage.lr_scheduler}), betas ({stage.adam_beta1}, "
        f"{stage.adam_beta2}), weight decay {stage.weight_decay}, batch {stage.batch_size}",
        "lora": lora_summary(stage.lora),
    }
