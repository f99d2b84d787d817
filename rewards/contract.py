"""The format contract: how a reasoning completion is written and how its answer is read.

A completion is ``<think>{trace}</think>{answer}``. Models whose chat template already opens the
think tag at the end of the generation prompt (``think_prefill``) produce the same text without
the leading ``<think>``; the prompt carries it instead.

SFT formatting, the GRPO prompt and the reward parsers all go through this module (it lives with the
rewards, which import nothing from reasonkit; reasonkit imports it from here), so there is
exactly one definition of where the trace ends and the answer begins.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def format_completion(trace: str | None, answer: str, *, think_prefilled: bool = False) -> str:
    """The text a model is trained to produce after the prompt.

    >>> format_completion("2 + 2 = 4.", "4")
    '<think>2 + 2 = 4.</think>4'
    >>> format_completion("2 + 2 = 4.", "4", think_prefilled=True)
    '2 + 2 = 4.</think>4'
    >>> format_completion(None, "4")  # a direct answer, no reasoning
    '4'
    """
    if trace is None:
        return answer
    opening = "" if think_prefilled else THINK_OPEN
    return f"{opening}{trace}{THINK_CLOSE}{answer}"


@dataclass(frozen=True)
class ParsedCompletion:
    trace: str | None  # None when the completion has no think block
    answer: str | None  # None when no answer can be read (unclosed or malformed think block)


def parse_completion(
    text: str, *, think_prefilled: bool = False, require_think: bool = True
) -> ParsedCompletion:
    """Split a completion into trace and answer; the answer is only ever read after the think block.

    A completion with more than one think block, an unclosed one, or text before ``<think>`` is
    malformed: its answer is None, so nothing written inside the reasoning can be scored as the
    answer. With ``require_think=False`` (models trained on direct answers) a completion without
    any think tag is all answer.

    >>> parse_completion("<think>7 * 6 = 42.</think> 42")
    ParsedCompletion(trace='7 * 6 = 42.', answer='42')
    >>> parse_completion("<think>the answer is 42").answer is None
    True
    >>> parse_completion("42", require_think=False)
    ParsedCompletion(trace=None, answer='42')
    """
    if think_prefilled:
        text = THINK_OPEN + text
    if THINK_OPEN not in text and THINK_CLOSE not in text:
        return ParsedCompletion(None, None if require_think else text.strip())
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return ParsedCompletion(None, None)
    before, rest = text.split(THINK_OPEN, 1)
    trace, sep, answer = rest.partition(THINK_CLOSE)
    if before.strip() or not sep:
        return ParsedCompletion(None, None)
    return ParsedCompletion(trace.strip(), answer.strip())


def prompt_opens_think(prompt_text: str) -> bool:
    """Whether a rendered generation prompt already opens the think block (the template prefills it)."""
    return prompt_text.rstrip().endswith(THINK_OPEN)
