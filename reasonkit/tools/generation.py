"""Prompt rows to completions, with tools or without: what a stage hands its engine.

``PlainGeneration`` renders each row's prompt and samples one turn. ``ToolGeneration`` gives every
completion its tools (a session: the functions, and its own environment reset with the row's columns),
renders the prompt with the tools' schemas (the chat template's ``tools=``) and the environment's
observation appended to the last user message, as TRL does, then runs the multi-turn loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from reasonkit.rollout.base import Rollout, RolloutEngine, SamplingSettings
from reasonkit.tools.loop import ToolLoop
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.toolbox import Toolbox, ToolError

# (tokenizer, prompt, tools=schemas or None) -> the prompt's text as the model reads it
Render = Callable[..., str]


class PlainGeneration:
    def __init__(self, tokenizer, render: Render):
        self.tokenizer, self.render = tokenizer, render

    def generate(
        self,
        engine: RolloutEngine,
        rows: list[dict],
        sampling: SamplingSettings,
        progress=None,
        with_logprobs=False,
    ) -> list[Rollout]:
        prompts = [self.render(self.tokenizer, row["prompt"]) for row in rows]
        return engine.generate(prompts, sampling, progress=progress, with_logprobs=with_logprobs)

    tool_names: list[str] = []

    def reward_names(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class ToolGeneration:
    def __init__(self, tokenizer, render: Render, settings: ToolSettings, where: str):
        self.tokenizer, self.render = tokenizer, render
        self.toolbox = Toolbox(settings, where)
        self.loop = ToolLoop(tokenizer, settings)
        self.tool_names = self.toolbox.tool_names()

    def generate(
        self,
        engine: RolloutEngine,
        rows: list[dict],
        sampling: SamplingSettings,
        progress=None,
        with_logprobs=False,
    ) -> list[Rollout]:
        """``sampling.n`` completions per row, each with its tool turns and its environment's reward."""
        n = sampling.n
        sessions = self.toolbox.sessions([row for row in rows for _ in range(n)])
        prompts, shown = [], []
        for session, row in zip(sessions, (row for row in rows for _ in range(n))):
            prompt = with_observation(row["prompt"], session.observation)
            if not prompt:
                raise ToolError(
                    "a row has no prompt and its environment's reset() returned none: give the data a prompt "
                    "column, or have reset(**row) return the task"
                )
            shown.append(prompt)
            prompts.append(self.render(self.tokenizer, prompt, tools=self.toolbox.schemas(row)))
        if all(len(set(prompts[k : k + n])) == 1 for k in range(0, len(prompts), n)):
            rollouts = self.loop.generate(engine, prompts[::n], sessions, sampling, progress, with_logprobs)
        else:  # environments that sample their own task: each completion its prompt (the same seeds)
            rollouts = self.loop.generate(
                engine, prompts, sessions, replace(sampling, n=1), progress, with_logprobs
            )
            for rollout in rollouts:
                rollout.prompt_index //= n
        for rollout, session, prompt in zip(rollouts, sessions, shown):
            rollout.tools.environment_reward = session.environment_reward()
            rollout.tools.environment = session.environment
            rollout.tools.prompt = prompt
        return rollouts

    def reward_names(self) -> list[str]:
        """The environments that score their completions (``get_reward``)."""
        return self.toolbox.reward_names()

    def close(self) -> None:
        self.loop.close()


def with_observation(prompt: str | list[dict], observation: str | None) -> str | list[dict]:
    """The prompt with an environment's observation appended to its last user message, as TRL does.

    >>> with_observation("Guess the number.", " It is between 1 and 10.")
    'Guess the number. It is between 1 and 10.'
    >>> with_observation([{"role": "user", "content": "Hi."}], " Board: empty.")
    [{'role': 'user', 'content': 'Hi. Board: empty.'}]
    """
    if observation is None:
        return prompt
    if isinstance(prompt, str):
        return prompt + observation
    return [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + observation}]


def generation_for(tokenizer, render: Render, settings: ToolSettings | None, where: str):
    """The stage's generation: with its tools when it has any."""
    if settings is not None and settings.enabled:
        return ToolGeneration(tokenizer, render, settings, where)
    return PlainGeneration(tokenizer, render)
