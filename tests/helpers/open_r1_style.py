"""Reward functions in the shape open-r1's ``rewards.py`` writes them: our own test copies, not open-r1's
code. Conversational completions read as ``completion[0]["content"]``, the gold answer in a ``solution``
column, ``**kwargs`` for the rest; some annotate ``completions``, some do not, as there. The tags they
look for are reasonkit's format contract (one think block, then the answer) instead of open-r1's
``<answer>`` tags, so that ``rewards check``'s batteries apply to them."""

import re

from math_verify import LatexExtractionConfig, parse, verify


def accuracy_reward(
    completions: list[list[dict[str, str]]], solution: list[str], **kwargs
) -> list[float | None]:
    """1.0 when the completion's answer equals the solution's (math-verify); None for a gold it cannot read."""
    contents = [completion[0]["content"] for completion in completions]
    rewards = []
    for content, sol in zip(contents, solution):
        gold_parsed = parse(sol, extraction_mode="first_match")
        if len(gold_parsed) == 0:
            rewards.append(None)
            continue
        answer_parsed = parse(
            content.split("</think>")[-1] if "</think>" in content else "",
            extraction_config=[
                LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)
            ],
            extraction_mode="first_match",
        )
        rewards.append(float(verify(gold_parsed, answer_parsed)))
    return rewards


def format_reward(completions, **kwargs):
    """1.0 for one think block at the start, then a non-empty answer."""
    pattern = r"^<think>(?!.*<think>).*?</think>(?!.*</think>)\s*\S.*$"
    completion_contents = [completion[0]["content"] for completion in completions]
    return [1.0 if re.match(pattern, content, re.DOTALL) else 0.0 for content in completion_contents]


def tag_count_reward(completions, **kwargs) -> list[float]:
    """0.5 for each of exactly one opening and one closing think tag."""

    def count_tags(text: str) -> float:
        return 0.5 * (text.count("<think>") == 1) + 0.5 * (text.count("</think>") == 1)

    return [count_tags(completion[0]["content"]) for completion in completions]


def len_reward(completions: list[dict[str, str]], solution: list[str], **kwargs) -> list[float]:
    """Kimi 1.5's length reward, as open-r1 writes it: among correct answers the shorter ones earn more,
    wrong ones earn at most 0 (a shaping reward that needs the whole group, not a verifier)."""
    contents = [completion[0]["content"] for completion in completions]
    correctness = [bool(score) for score in accuracy_reward(completions, solution)]
    lengths = [len(content) for content in contents]
    min_len, max_len = min(lengths), max(lengths)
    if max_len == min_len:
        return [0.0] * len(completions)
    rewards = []
    for length, correct in zip(lengths, correctness):
        lambda_val = 0.5 - (length - min_len) / (max_len - min_len)
        rewards.append(float(lambda_val if correct else min(0, lambda_val)))
    return rewards


def needs_difficulty(completions, solution, difficulty, **kwargs):
    """0.1 times the row's difficulty: shows a column the recipe never mapped reaches the reward."""
    return [0.1 * level for level in difficulty]


def logs_progress(completions, trainer_state, log_metric, log_extra, **kwargs):
    """Logs the step it is called at (trainer_state) and each completion's length, as TRL lets rewards do."""
    log_metric("global_step", trainer_state.global_step)
    log_extra("length", [len(c[0]["content"]) for c in completions])
    return [0.0 for _ in completions]
