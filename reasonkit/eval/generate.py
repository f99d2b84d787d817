"""``reasonkit generate``: teacher traces for distillation, kept only when verified.

For each prompt with a gold answer: sample ``num_samples`` completions from a teacher, split each into
trace and answer by the format contract, judge the answer with a reward verifier, and keep the correct
ones (the first, all, or the shortest per prompt), dropping truncated ones and traces over a token
budget. Prompts that overlap an evaluation set (shared word n-grams) are dropped before generating.

The output is a JSONL the SFT stage reads directly (``prompt``, ``trace``, ``answer``). With tools, the
teacher calls them while it answers (the tool loop, as in evaluation) and a kept completion is written as
its conversation (``messages``: the prompt, the assistant's turns and the tool results) instead of a trace,
which an SFT stage with the same ``tools`` trains on; one with a call that could not be read is dropped
as unreadable.

Work is done in chunks of prompts; after each, the kept rows and then ``<output>.progress.json`` are
written, so an interrupted run continues after the last finished chunk (rows of an unfinished chunk are
dropped first: no duplicates). The report counts what each filter removed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reasonkit.tools.calls import TOOL_CALL
from reasonkit.tools.settings import ToolSettings
from rewards.contract import parse_completion

Keep = Literal["first", "all", "shortest"]
FILTERS = ["sampled", "unreadable", "truncated", "over_budget", "wrong", "not_chosen", "kept"]


@dataclass(frozen=True)
class Candidate:
    """One teacher completion, judged."""

    trace: str | None
    answer: str | None
    correct: bool
    truncated: bool
    num_tokens: int
    messages: list[dict] | None = None  # with tools: the whole conversation, prompt and tool turns


def select(
    candidates: list[Candidate], keep: Keep, max_tokens: int | None
) -> tuple[list[Candidate], Counter]:
    """The candidates to keep for one prompt, and how many each filter removed (in FILTERS order)."""
    counts = Counter(sampled=len(candidates))
    usable = []
    for c in candidates:
        if reason := _rejected_by(c, max_tokens):
            counts[reason] += 1
        else:
            usable.append(c)
    if keep == "all":
        chosen = usable
    elif keep == "first":
        chosen = usable[:1]
    else:
        chosen = sorted(usable, key=lambda c: c.num_tokens)[:1]
    counts["not_chosen"] += len(usable) - len(chosen)
    counts["kept"] += len(chosen)
    return chosen, counts


def _rejected_by(c: Candidate, max_tokens: int | None) -> str | None:
    """The first filter ``c`` fails, or None."""
    if c.trace is None or not c.answer or _calls_unreadable(c.messages):
        return "unreadable"
    if c.truncated:
        return "truncated"
    if max_tokens is not None and c.num_tokens > max_tokens:
        return "over_budget"
    if not c.correct:
        return "wrong"
    return None


def _calls_unreadable(messages: list[dict] | None) -> bool:
    """Whether a conversation has a call that could not be read (its name is empty): the chat template
    could not write it back as the teacher wrote it, so it is no example to learn from."""
    calls = [call for m in messages or [] for call in m.get("tool_calls") or []]
    return any(not call["function"]["name"] for call in calls)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class Decontaminator:
    """Flags a prompt sharing any word ``n``-gram with the evaluation texts (n = 13, as in GPT-3's report,
    catches reworded copies; shorter texts are compared whole)."""

    def __init__(self, eval_texts: list[str], n: int = 13):
        self.n = n
        self.ngrams = {gram for text in eval_texts for gram in self._grams(words(text))}

    def _grams(self, tokens: list[str]) -> set[tuple[str, ...]]:
        if len(tokens) < self.n:
            return {tuple(tokens)} if tokens else set()
        return {tuple(tokens[i : i + self.n]) for i in range(len(tokens) - self.n + 1)}

    def contaminated(self, text: str) -> bool:
        return not self.ngrams.isdisjoint(self._grams(words(text)))


@dataclass
class GenerateSettings:
    num_samples: int = 4
    keep: Keep = "first"
    verifier: str = "exact_answer"
    # The shape the verifier reads completions in (rewards.convention.SHAPES): auto, text or conversational.
    verifier_completions: str = "auto"
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 4096
    max_trace_tokens: int | None = None  # completions longer than this (in tokens) are dropped
    chunk_size: int = 64  # prompts per chunk: the unit of progress and resumption
    seed: int = 0
    # The tools the teacher may call; kept completions are written as `messages` conversations.
    tools: ToolSettings | None = None


def generate_traces(
    engine, tokenizer, fmt, problems: list, out: Path, settings: GenerateSettings, decontaminator=None
) -> dict:
    """Generate, verify, filter and append kept triples to ``out``; resumes from ``out``'s progress file.

    ``problems``: objects with ``prompt`` and ``answer``. Returns the report (also in the progress file).
    """
    from tqdm.auto import tqdm

    from reasonkit.eval.evaluate import check_verifier_columns

    check_verifier_columns(settings.verifier, problems)
    progress_path = out.with_name(out.name + ".progress.json")
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {"done": 0, "counts": {}}
    counts = Counter(progress["counts"])
    _drop_unfinished_rows(out, progress["done"])
    with tqdm(total=len(problems), initial=progress["done"], desc="generate", unit="prompt") as bar:
        for start in range(progress["done"], len(problems), settings.chunk_size):
            chunk = list(enumerate(problems[start : start + settings.chunk_size], start))
            if decontaminator is not None:
                clean = [(i, p) for i, p in chunk if not decontaminator.contaminated(p.prompt)]
                counts["prompts_contaminated"] += len(chunk) - len(clean)
                chunk = clean
            rows = _generate_chunk(engine, tokenizer, fmt, chunk, settings, counts)
            with out.open("a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
            progress = {"done": min(start + settings.chunk_size, len(problems)), "counts": dict(counts)}
            progress_path.write_text(json.dumps(progress, indent=2))
            bar.update(progress["done"] - bar.n)
    return {
        "prompts": len(problems),
        **{k: counts.get(k, 0) for k in ["prompts_contaminated", *FILTERS, "prompts_kept"]},
    }


def _generate_chunk(engine, tokenizer, fmt, chunk, settings, counts) -> list[dict]:
    # Imported here, not at the top: the command line reads GenerateSettings without importing torch.
    from reasonkit.eval.evaluate import sample_and_judge
    from reasonkit.rollout import SamplingSettings
    from reasonkit.tools.loop import turns_for_log

    if not chunk:
        return []
    n = settings.num_samples
    sampling = SamplingSettings(
        n=n,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed + chunk[0][0],  # a resumed chunk samples as it would have
    )
    judged = sample_and_judge(
        engine,
        tokenizer,
        fmt,
        [p for _, p in chunk],
        sampling,
        settings.verifier,
        completions=settings.verifier_completions,
        tools=settings.tools,
    )
    rows = []
    for j, (index, problem) in enumerate(chunk):
        candidates = []
        for k in range(j * n, (j + 1) * n):
            r, parsed = judged.rollouts[k], parse_completion(judged.responses[k])
            messages = conversation(judged.prompts[k], turns_for_log(r.tools)) if settings.tools else None
            candidates.append(
                Candidate(
                    parsed.trace,
                    parsed.answer,
                    judged.scores[k] == 1.0,
                    r.truncated,
                    len(r.completion_ids),
                    messages,
                )
            )
        chosen, chunk_counts = select(candidates, settings.keep, settings.max_trace_tokens)
        counts.update(chunk_counts)
        counts["prompts_kept"] += bool(chosen)
        rows += [
            {
                "prompt": problem.prompt,
                # with tools, the conversation (SFT with tools reads it), not a trace with the calls in it
                **({"messages": c.messages} if c.messages is not None else {"trace": c.trace}),
                "answer": c.answer,
                "gold": problem.answer,
                "prompt_index": index,
                "num_tokens": c.num_tokens,
            }
            for c in chosen
        ]
    return rows


def conversation(prompt: str | list[dict], turns: list[dict]) -> list[dict]:
    """A completion with tool turns as the conversation distillation trains on: the prompt's messages, then
    the turns (``turns_for_log``), each assistant turn that called tools without the calls' markup in its
    text (the chat template writes them from ``tool_calls``).

    >>> turns = [{"role": "assistant", "content": '<think><tool_call>{"name": "f", "arguments": {}}</tool_call>',
    ...           "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]},
    ...          {"role": "tool", "name": "f", "content": "1"}, {"role": "assistant", "content": "</think>1"}]
    >>> [m.get("content") for m in conversation("q?", turns)]
    ['q?', '<think>', '1', '</think>1']
    """
    messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    for turn in turns:
        if turn.get("tool_calls"):
            turn = {**turn, "content": TOOL_CALL.sub("", turn["content"]).strip()}
        messages.append(turn)
    return messages


def _drop_unfinished_rows(out: Path, done: int) -> None:
    """Rows of a chunk that was being written when the run stopped (its progress was not recorded)."""
    if not out.exists():
        return
    lines = out.read_text().splitlines()
    finished = [line for line in lines if json.loads(line)["prompt_index"] < done]
    if len(finished) != len(lines):
        out.write_text("".join(line + "\n" for line in finished))
