"""Math-answer reward: the one final answer after the think block, checked against the gold answer.

Equality is math-verify's: ``\\frac{1}{2}``, ``1/2`` and ``0.5`` are the same answer, as are ``x = 3``
and ``3``. What counts as *the* final answer is decided here, strictly, so the policy cannot hedge:

- only the text after ``</think>`` is read; a completion without a closed think block scores 0;
- with ``\\boxed{}``: exactly one box, and its content is the answer (two boxes score 0, even equal ones);
- without: the whole answer text is the answer, after an optional "The answer is" and a final period.
  ``42 or 41``, ``42 42 42`` and ``42, 42`` are not 42; several items count only when the gold answer
  has as many (``3, 5`` against a gold ``5, 3``).

A gold answer that cannot be parsed gives None (does not apply), never a score.

math-verify bounds its own work with SIGALRM, which works only in a process's main thread. Called
from any other thread, this reward runs itself in a worker process instead (slower, same result).
"""

from __future__ import annotations

import re
import threading

from rewards.contract import parse_completion
from rewards.registry import register

TIMEOUT_SECONDS = 5  # math-verify's limit for parsing one answer and for comparing two
MAX_ANSWER_CHARS = 1000  # a final answer is short; longer text is prose or junk, and costly to parse
LEAD_IN = re.compile(r"^\W*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:=]?[\s*]*", re.IGNORECASE)
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
ITEM_SEPARATOR = re.compile(r",|;|\\text\{\s*(?:or|and)\s*\}|\bor\b|\band\b")


def boxed_contents(text: str) -> list[str]:
    """What every ``\\boxed{…}`` (or ``\\fbox{…}``) in ``text`` holds, braces balanced.

    >>> boxed_contents(r"so \\boxed{\\frac{1}{2}} and \\fbox{3}")
    ['\\\\frac{1}{2}', '3']
    """
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                found.append(text[start:end])
                break
    return found


def final_answer(text: str) -> str | None:
    """The single final answer ``text`` gives, as bare LaTeX; None when it gives none or several boxes.

    >>> final_answer("The answer is $\\\\boxed{1,000}$."), final_answer("**Answer:** 42."), final_answer("")
    ('1000', '42', None)
    """
    boxed = boxed_contents(text)
    if len(boxed) > 1:
        return None
    answer = boxed[0] if boxed else LEAD_IN.sub("", text.strip())
    answer = answer.strip().removesuffix(".").replace("$", "")
    for delimiter in (r"\(", r"\)", r"\[", r"\]"):
        answer = answer.replace(delimiter, "")
    answer = THOUSANDS.sub("", answer).strip()
    return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None


def count_items(answer: str) -> int:
    """Top-level items in an answer: separators inside brackets or braces do not count.

    >>> count_items("3, 5"), count_items("(1, 2)"), count_items("\\\\{1, 2\\\\}"), count_items("42 or 41")
    (2, 1, 1, 2)
    """
    depth, top_level = 0, []
    for ch in answer:
        if ch in ")]}":
            depth -= 1
        top_level.append(ch if depth == 0 else " ")
        if ch in "([{":
            depth += 1
    return len(ITEM_SEPARATOR.findall("".join(top_level))) + 1


def _parse(answer: str):
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${answer}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=TIMEOUT_SECONDS)


def score_answer(answer_text: str | None, gold: str) -> float | None:
    """1.0 or 0.0 for the answer section of one completion; None when ``gold`` cannot be parsed."""
    from math_verify import verify

    gold_answer = final_answer(str(gold))
    gold_parsed = _parse(gold_answer) if gold_answer else []
    if not gold_parsed or isinstance(gold_parsed[0], str):  # only the raw text back: LaTeX it could not read
        return None
    predicted = final_answer(answer_text or "")
    if predicted is None or count_items(predicted) != count_items(gold_answer):
        return 0.0
    parsed = _parse(predicted)
    return float(bool(parsed) and verify(gold_parsed, parsed, timeout_seconds=TIMEOUT_SECONDS))


@register("math", checks="answer")
def math_answer(prompts, completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the one final answer after the think block equals the gold ``answer`` (math-verify).

    >>> math_answer(["q"] * 5, ["<think>.</think>\\\\boxed{0.5}", "<think>.</think>1/2", "<think>1/2</think>",
    ...                         "<think>.</think>1/2 or 1/3", "<think>.</think>\\\\boxed{1/2} \\\\boxed{1/2}"],
    ...             answer=["\\\\frac{1}{2}"] * 5)
    [1.0, 1.0, 0.0, 0.0, 0.0]
    """
    if threading.current_thread() is not threading.main_thread():
        return _in_a_worker_process(prompts, completions, answer)
    return [score_answer(parse_completion(c).answer, g) for c, g in zip(completions, answer)]


def _in_a_worker_process(prompts, completions, answer) -> list[float | None]:
    from rewards.pool import RewardCall, RewardPool

    with RewardPool({"math": RewardCall("math")}, workers=1, timeout=4 * TIMEOUT_SECONDS) as pool:
        scores, failures = pool.score(prompts, completions, {"answer": list(answer)})
    if failures:
        raise RuntimeError(failures[0].describe(prompts, completions))
    return scores["math"]
