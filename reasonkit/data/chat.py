"""Chat formatting for training and generation, through the format contract.

The prompt is rendered by the tokenizer's own chat template with the generation prompt appended,
exactly as at generation time; the completion follows it token for token. Prompt and completion are
tokenized separately so the boundary is the one the model sees when it generates.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonkit.errors import ReasonkitError
from rewards.contract import THINK_OPEN, format_completion, parse_completion, prompt_opens_think


class FormatError(ReasonkitError, ValueError):
    pass


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are rendered for one tokenizer, and whether they open the think block."""

    think_prefilled: bool

    def render(self, tokenizer, prompt: str | list[dict], tools: list[dict] | None = None) -> str:
        """``prompt``: a string (one user message) or a list of messages (system prompt, earlier turns);
        ``tools``: the JSON schemas of the tools the model may call, shown by the chat template."""
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False
        )
        if self.think_prefilled and not prompt_opens_think(text):
            text += THINK_OPEN
        return text


def prompt_format(tokenizer, think_prefill: bool | None, with_traces: bool = True) -> PromptFormat:
    """Decide the think prefill: from the template (``None``), or forced on by the recipe (``True``)."""
    probe = tokenizer.apply_chat_template(
        [{"role": "user", "content": "1 + 1?"}], add_generation_prompt=True, tokenize=False
    )
    template_opens = prompt_opens_think(probe)
    if think_prefill is False and template_opens:
        raise FormatError(
            "model.think_prefill is false, but the chat template opens <think> itself; remove the setting"
        )
    prefilled = template_opens or bool(think_prefill)
    if prefilled and not with_traces:
        raise FormatError("direct-answer training (traces: false) cannot use a prompt that opens <think>")
    return PromptFormat(think_prefilled=prefilled)


@dataclass(frozen=True)
class FormattedExample:
    input_ids: list[int]
    completion_mask: list[int]  # 1 on completion tokens (trained), 0 on prompt tokens (masked)


def tokenize_for_sft(
    tokenizer, fmt: PromptFormat, prompt: str, trace: str | None, answer: str
) -> FormattedExample:
    """Prompt ids (masked) followed by completion ids and EOS (trained)."""
    completion = format_completion(trace, answer, think_prefilled=fmt.think_prefilled)
    parsed = parse_completion(
        completion, think_prefilled=fmt.think_prefilled, require_think=trace is not None
    )
    if parsed.answer != answer.strip() or (trace is not None and parsed.trace != trace.strip()):
        raise FormatError(f"the format contract does not read back this example: {completion!r}")
    prompt_ids = tokenizer(fmt.render(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return FormattedExample(prompt_ids + completion_ids, [0] * len(prompt_ids) + [1] * len(completion_ids))
