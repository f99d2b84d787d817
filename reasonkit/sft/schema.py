"""The ``type: sft`` section of a recipe: its settings, what makes one that cannot run, what it optimises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reasonkit.config import LoRASettings, Recipe, lora_summary
from reasonkit.tools.settings import ToolSettings


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
    # Distillation with tools: train on conversations with tool turns (data.train's messages_column,
    # default `messages`), the assistant's turns only; these tools' schemas are shown to the model by the
    # chat template's `tools=`, as when it generates with them. The same section as GRPO's and eval's.
    tools: ToolSettings | None = None
    logging_steps: int = 10
    save_steps: int | None = None  # null: save at the end only
    seed: int | None = None  # null: the recipe's seed


def validate(name: str, stage: SFTStage, recipe: Recipe, trained: list[str]) -> list[str]:
    errors = []
    if stage.packing:
        errors.append(
            f"stages.{name}.packing: packing is not supported: it splits traces and mixes several into one "
            "sequence, which teaches wrong endings. Remove it or set it to false."
        )
    if stage.tools is not None:
        errors += validate_tools(name, stage.tools, recipe)
    return errors


def validate_tools(name: str, tools: ToolSettings, recipe: Recipe) -> list[str]:
    """Distillation with tools: conversations to train on, rendered by the chat template as they are."""
    from reasonkit.tools.checks import tools_problems  # loads the tools and the tokenizer

    errors = []
    if recipe.data.train is None and recipe.data.task is None:
        errors.append(
            f"stages.{name}.tools: distillation with tools trains on conversations; set data.train to a "
            "dataset with a messages column (data.train.messages_column, default `messages`)"
        )
    if recipe.data.train is None and recipe.data.task is not None and "calculator" not in tools.functions:
        errors.append(
            f"stages.{name}.tools: the {recipe.data.task} task's teacher calls the calculator; add it to "
            "tools.functions"
        )
    if recipe.model.think_prefill:
        errors.append(
            f"stages.{name}.tools: conversations are rendered by the chat template as they are, so "
            "model.think_prefill cannot open <think> for them; write it in the first assistant turn and "
            "remove model.think_prefill"
        )
    return errors + tools_problems(tools, f"stages.{name}.tools", recipe.model.path)


OBJECTIVE = {
    "loss": "cross-entropy on completion tokens (prompt masked), mean over the batch's completion tokens",
    "packing": False,
    "overlong": "dropped",
}


def objective(stage: SFTStage) -> dict:
    """What the stage optimises, as recorded in the model's manifest."""
    recorded = {**OBJECTIVE, "learning_rate": stage.learning_rate, "lora": lora_summary(stage.lora)}
    if stage.tools is not None:
        recorded["tools"] = {
            "trained": "the assistant's turns of each conversation; prompt and tool results attended, masked",
            "functions": stage.tools.functions,
            "environment_factory": stage.tools.environment_factory,
        }
    return recorded
