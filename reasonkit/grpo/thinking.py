"""How the model GRPO trains thinks: in text (any model), or in hidden states before its text (a latent model,
``latent.json`` beside its weights). Chosen once from the model a stage continues from; the trainer asks
it what differs instead of branching (docs/latent-reasoning.md, "GRPO on a latent model").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from reasonkit.config import ConfigError
from reasonkit.data import PromptFormat, prompt_format
from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.latent.engine import (
    LatentSettings,
    latent_engine_class,
    read_latent_settings,
    write_latent_settings,
)
from reasonkit.latent.logprobs import latent_logprobs
from reasonkit.rollout import engine_class


class InText:
    """A model that writes its reasoning: the recipe's engine, prompt format and micro-batch layout."""

    def engine_class(self, engine: str):
        return engine_class(engine)

    def check_launch(self, where: str, world: int, deepspeed: bool) -> None:
        pass

    def prompt_format(self, tokenizer, think_prefill: bool | None) -> PromptFormat:
        return prompt_format(tokenizer, think_prefill)

    def micro_batch_layout(self, layout: str) -> str:
        return layout

    def logprobs(self):
        return completion_logprobs

    def describe(self) -> dict:
        """What the run's objective adds (nothing: the text is the whole policy)."""
        return {}

    def save(self, model_dir: Path) -> None:
        pass


@dataclass(frozen=True)
class InLatentThoughts(InText):
    """A latent model: sampled by the latent engine, its prompts opening the think block (the engine appends
    ``<|bot|>`` after ``<think>``), its log-probs run through the whole chain of thoughts (latent/logprobs.py),
    whose layout is padded."""

    settings: LatentSettings
    model_path: str

    def engine_class(self, engine: str):
        return latent_engine_class(engine, self.model_path)

    def check_launch(self, where: str, world: int, deepspeed: bool) -> None:
        if world > 1 or deepspeed:
            # The chain calls the model once per thought before one backward: DDP's reducer and DeepSpeed
            # expect one forward per backward (the latent stage sums its gradients itself instead).
            raise ConfigError(
                f"{where}: GRPO on a latent model ({self.model_path}) runs in one process without DeepSpeed so "
                "far; launch it without accelerate's multi-process or DeepSpeed config"
            )

    def prompt_format(self, tokenizer, think_prefill: bool | None) -> PromptFormat:
        return PromptFormat(think_prefilled=True)

    def micro_batch_layout(self, layout: str) -> str:
        return "padded"

    def logprobs(self):
        return latent_logprobs(self.settings)

    def describe(self) -> dict:
        return {
            "thoughts": f"{self.settings.thoughts} thoughts before the text ({asdict(self.settings)}), the "
            "completion's log-probs through the whole chain of thoughts"
        }

    def save(self, model_dir: Path) -> None:
        write_latent_settings(model_dir, self.settings)  # the model still thinks as it did


def thinking_of(model_path: str) -> InText:
    """How the model at ``model_path`` thinks (its ``latent.json``, if it has one)."""
    settings = read_latent_settings(model_path)
    return InLatentThoughts(settings, str(model_path)) if settings else InText()
