"""Multi-turn generation with tools, on any engine: one loop above the engine interface.

Round 0 samples ``n`` completions per prompt as usual. Each completion whose turn ended (at its stop
token) with tool calls has them run (every call of the round at once, ``calls.ToolRunner``); the results
are appended as the template's tokens for them (``template.tool_suffix_ids``) to the completion's own
tokens, and the engine continues each such completion from its token ids (n = 1). Until a turn calls no
tool, ``max_calls`` calls were made (a turn calling more then ends the completion), or the completion
budget ``max_new_tokens`` runs out: a round of results that would not fit is rolled back (the
completion ends with its calling turn and counts as truncated); a continuation is cut to the budget.

Per completion (``ToolUse``): the mask (1 on the model's tokens, 0 on the template's and the tools'),
the turns as chat messages, the calls and how many failed. Sampler log-probs are the engine's for the
model's tokens; tool tokens hold 0.0 there, never read, since every consumer goes by the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from reasonkit.rollout.base import Rollout, RolloutEngine, SamplingSettings, prompt_token_ids
from reasonkit.tools.calls import ToolCall, ToolRunner, parse_tool_calls, parse_with_template
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.template import tool_suffix_ids
from reasonkit.tools.toolbox import Session


@dataclass
class ToolUse:
    """What the tools did in one completion (``Rollout.tools``)."""

    mask: list[int]  # per completion token: 1 the model's, 0 a tool result's (and its template tokens)
    messages: list[dict] = field(default_factory=list)  # the turns: assistant (content, tool_calls), tool
    calls: list[str] = field(default_factory=list)  # each call's tool name ("" where unreadable)
    failed: int = 0  # calls that gave the model an error
    capped: bool = False  # ended by max_calls with a call still asked for
    rolled_back: bool = False  # ended because a round's results did not fit the completion budget
    # (environment class, its get_reward() at the rollout's end: a float, None, or why it failed)
    environment_reward: tuple[str, float | None | str] | None = None
    # the instance that ran the rollout, for rewards that read `environments` (the next batch resets it)
    environment: object | None = None
    # the prompt as the model was shown it: an environment's reset() text appended (teacher traces keep it)
    prompt: str | list[dict] | None = None

    def counts(self) -> ToolUse:
        """What the step's tool metrics need, light to gather over processes."""
        return replace(self, mask=[], messages=[], environment=None)


class ToolLoop:
    """Generation with tools for one stage: its tokenizer, tool settings and the runner of the calls."""

    def __init__(self, tokenizer, settings: ToolSettings):
        self.tokenizer, self.settings = tokenizer, settings
        self.runner = ToolRunner(settings.timeout, settings.max_result_chars)
        # transformers' parser where the tokenizer has a response template, as TRL does
        self.template_parser = bool(
            getattr(tokenizer, "response_template", None) or getattr(tokenizer, "response_schema", None)
        )

    def generate(
        self, engine: RolloutEngine, prompts: list[str] | list[list[int]], sessions: list[Session],
        sampling: SamplingSettings, progress=None, with_logprobs: bool = False,
    ) -> list[Rollout]:  # fmt: skip
        """``sampling.n`` completions per prompt, prompt by prompt, each with its tool turns; ``sessions``:
        one per completion, in the same order."""
        prompt_ids = prompt_token_ids(self.tokenizer, prompts)
        rollouts = engine.generate(prompt_ids, sampling, progress=progress, with_logprobs=with_logprobs)
        assert len(sessions) == len(rollouts), "one tool session per completion"
        for rollout in rollouts:
            rollout.tools = ToolUse(mask=[1] * len(rollout.completion_ids))
            self._record_turn(rollout, rollout.text)
        active = [i for i, r in enumerate(rollouts) if self._calls_of(r, sessions[i])]
        round_number = 0
        while active:
            round_number += 1
            active = self._run_tools(rollouts, sessions, active, sampling.max_new_tokens)
            if not active:
                break
            # Each continuation has its own history: n = 1, seeds apart from every earlier round's.
            more = replace(
                sampling,
                n=1,
                max_new_tokens=max(sampling.max_new_tokens - len(rollouts[i].completion_ids) for i in active),
                seed=None if sampling.seed is None else sampling.seed + round_number * len(rollouts),
            )
            continuations = engine.generate(
                [rollouts[i].prompt_ids + rollouts[i].completion_ids for i in active],
                more,
                with_logprobs=with_logprobs,
            )
            for i, turn in zip(active, continuations):
                self._append_turn(rollouts[i], turn, sampling.max_new_tokens)
            active = [i for i in active if self._calls_of(rollouts[i], sessions[i])]
        for rollout in rollouts:
            rollout.text = self.tokenizer.decode(_without_last_stop(rollout), skip_special_tokens=True)
        return rollouts

    def _calls_of(self, rollout: Rollout, session: Session) -> list[ToolCall]:
        """The calls of the completion's last turn, if it ended at its stop token and may still call."""
        last = rollout.tools.messages[-1]
        if rollout.truncated or not last.get("tool_calls"):
            return []
        if len(rollout.tools.calls) >= self.settings.max_calls:
            rollout.tools.capped = True
            return []
        return last["_calls"]

    def _record_turn(self, rollout: Rollout, text: str, turn_ids: list[int] | None = None) -> None:
        """The model's latest turn as a message, with the calls it asked for."""
        if self.template_parser:
            ids = turn_ids if turn_ids is not None else rollout.completion_ids
            prefix = rollout.prompt_ids + rollout.completion_ids[: len(rollout.completion_ids) - len(ids)]
            calls = parse_with_template(self.tokenizer, ids, prefix, None)
        else:
            calls = parse_tool_calls(text)
        message = {"role": "assistant", "content": text, "_calls": calls}
        if calls:
            message["tool_calls"] = [
                {"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ]
        rollout.tools.messages.append(message)

    def _run_tools(self, rollouts, sessions, active: list[int], budget: int) -> list[int]:
        """Run the calls of the ``active`` completions and append their results; those that still fit."""
        jobs = [(i, call) for i in active for call in rollouts[i].tools.messages[-1]["_calls"]]
        results = self.runner.run([(sessions[i], call) for i, call in jobs])
        by_completion: dict[int, list] = {i: [] for i in active}
        for (i, call), result in zip(jobs, results):
            by_completion[i].append((call, result))
        going_on = []
        for i in active:
            use = rollouts[i].tools
            messages = [
                {"role": "tool", "name": r.name or "unknown", "content": r.content}
                for _, r in by_completion[i]
            ]
            use.calls += [call.name for call, _ in by_completion[i]]
            use.failed += sum(r.failed for _, r in by_completion[i])
            suffix = tool_suffix_ids(self.tokenizer, messages)
            if len(rollouts[i].completion_ids) + len(suffix) >= budget:  # no room to answer: roll back
                use.rolled_back = True
                rollouts[i].truncated = True
                continue
            rollouts[i].completion_ids = rollouts[i].completion_ids + suffix
            use.mask += [0] * len(suffix)
            if rollouts[i].rollout_logprobs is not None:
                rollouts[i].rollout_logprobs = rollouts[i].rollout_logprobs + [0.0] * len(suffix)
            use.messages += messages
            going_on.append(i)
        return going_on

    def _append_turn(self, rollout: Rollout, turn: Rollout, budget: int) -> None:
        """The model's next turn, cut to what is left of the completion budget."""
        room = budget - len(rollout.completion_ids)
        ids, truncated = turn.completion_ids, turn.truncated
        if len(ids) > room:
            ids, truncated = ids[:room], True
        rollout.completion_ids = rollout.completion_ids + ids
        rollout.tools.mask += [1] * len(ids)
        if rollout.rollout_logprobs is not None:
            rollout.rollout_logprobs = rollout.rollout_logprobs + list(turn.rollout_logprobs[: len(ids)])
        rollout.truncated = truncated
        if turn.weight_version is not None:  # the oldest weights that sampled any of it
            rollout.weight_version = min(turn.weight_version, rollout.weight_version or turn.weight_version)
        text = (
            turn.text
            if len(ids) == len(turn.completion_ids)
            else self.tokenizer.decode(ids, skip_special_tokens=True)
        )
        self._record_turn(rollout, text, ids)

    def close(self) -> None:
        self.runner.close()


def _without_last_stop(rollout: Rollout) -> list[int]:
    """The completion's ids without the stop token that ended it (as engines leave it out of ``text``)."""
    return rollout.completion_ids if rollout.truncated else rollout.completion_ids[:-1]


def turns_for_log(use: ToolUse) -> list[dict]:
    """The turns as ``completions.jsonl`` shows them (the parsed calls left out: tool_calls say them)."""
    return [{k: v for k, v in message.items() if k != "_calls"} for message in use.messages]


def tool_metrics(uses: list[ToolUse | None], names: list[str]) -> dict[str, float]:
    """Per step: calls per completion, the share of calls that failed, the share of completions that
    hit max_calls or ran out of budget for a result, and calls per completion of each tool.

    >>> tool_metrics([ToolUse([1], calls=["calculator", "calculator"], failed=1), ToolUse([1], capped=True)], ["calculator"])
    {'tools/calls_per_completion': 1.0, 'tools/failed_share': 0.5, 'tools/capped_share': 0.5, 'tools/rolled_back_share': 0.0, 'tools/calculator_per_completion': 1.0}
    """
    uses = [u for u in uses if u is not None]
    if not uses:
        return {}
    calls = sum(len(u.calls) for u in uses)
    metrics = {
        "tools/calls_per_completion": calls / len(uses),
        "tools/failed_share": sum(u.failed for u in uses) / calls if calls else 0.0,
        "tools/capped_share": sum(u.capped for u in uses) / len(uses),
        "tools/rolled_back_share": sum(u.rolled_back for u in uses) / len(uses),
    }
    for name in names:
        metrics[f"tools/{name}_per_completion"] = sum(u.calls.count(name) for u in uses) / len(uses)
    return metrics
