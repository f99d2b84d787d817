"""Load (prompt, trace, answer) examples from a built-in task, local files, or a hub dataset.

Local jsonl/json/parquet/csv files and hub ids go through the same ``datasets.load_dataset`` call.
Rows with a missing or empty field are reported by row number (0-based, in file order); the recipe
decides whether they stop the run (``on_invalid: error``, the default) or are skipped and counted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from reasonkit import hub
from reasonkit.config import DataConfig, DatasetSource
from reasonkit.errors import ReasonkitError
from reasonkit.tasks import arithmetic_splits
from rewards.contract import THINK_CLOSE, THINK_OPEN, parse_completion

log = logging.getLogger(__name__)

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
SHOWN_ROWS = 10  # how many bad row numbers an error message lists


class DataError(ReasonkitError, ValueError):
    """A dataset that cannot be used as configured; the message says what to fix."""


@dataclass(frozen=True)
class TraceExample:
    prompt: str
    trace: str | None  # None for direct-answer examples
    answer: str


@dataclass(frozen=True)
class LoadReport:
    rows: int
    skipped: int


def load_examples(data: DataConfig, split: str, *, need_trace: bool):
    """Examples of ``split`` ("train", "test" or "rl") and a LoadReport; traces dropped when not needed."""
    if _from_task(data, split):
        # ArithmeticTask's fields are arithmetic_splits' parameters, by name
        problems = arithmetic_splits(**asdict(data.arithmetic))[split]
        examples = [TraceExample(p.prompt, p.trace if need_trace else None, p.answer) for p in problems]
        return examples, LoadReport(rows=len(examples), skipped=0)
    source = split_source(data, split)
    rows = load_rows(source)
    return examples_from_rows(rows, source, need_trace=need_trace, on_invalid=data.on_invalid)


def _from_task(data: DataConfig, split: str) -> bool:
    """The built-in task supplies a split unless the recipe gives that split a dataset of its own
    (`data.test` or `data.rl` next to `task`)."""
    return data.task == "arithmetic" and getattr(data, split, None) is None


def rl_split(data: DataConfig) -> str:
    """GRPO prompts come from the `rl` split when the recipe has one: prompts the SFT stages never saw."""
    task_has_rl = data.task == "arithmetic" and data.arithmetic.rl_size > 0
    return "rl" if data.rl is not None or task_has_rl else "train"


def load_prompt_rows(data: DataConfig, split: str, prompt_from_environment: bool = False) -> list[dict]:
    """Rows for RL: ``prompt`` plus every other column of the source, which rewards receive by name.

    The prompt is a string or, as in TRL's conversational datasets, a list of messages (a system prompt,
    earlier turns, the user's question), rendered by the chat template as it is. Columns keep their own
    names; the recipe's mapped columns also arrive under the names rewards read (``prompt``, ``answer``).
    ``prompt_from_environment``: a row may have no prompt (""), as in TRL, when an environment's
    ``reset(**row)`` returns it.
    """
    if _from_task(data, split):
        problems = arithmetic_splits(**asdict(data.arithmetic))[split]
        rows = [{"prompt": p.prompt, "answer": p.answer, "style": p.style} for p in problems]
        if not rows:
            raise DataError(f"the built-in task has no {split} prompts: set data.arithmetic.{split}_size")
        return rows
    source = split_source(data, split)
    rows = load_rows(source)
    if rows and source.prompt_column not in rows[0] and not prompt_from_environment:
        raise DataError(
            f"dataset {source.path!r} has no prompt column {source.prompt_column!r}; it has "
            f"{sorted(rows[0])}. Set data.{split}.prompt_column in the recipe."
        )
    kept, bad_rows = [], []
    for index, row in enumerate(rows):
        prompt = row.get(source.prompt_column, "" if prompt_from_environment else None)
        if not _usable_prompt(prompt) and not prompt_from_environment:
            bad_rows.append((index, "empty prompt"))
            continue
        mapped = {"prompt": prompt}
        if source.answer_column != "answer" and source.answer_column in row:
            mapped["answer"] = row[source.answer_column]
        kept.append({**row, **mapped})
    report_unusable(source, bad_rows, len(rows), data.on_invalid)
    if not kept:
        raise DataError(f"dataset {source.path!r} (data.{split}) has no prompts to train on")
    return kept


def _usable_prompt(prompt) -> bool:
    """A non-empty string, or messages (dicts with a role) of which one user message has content."""
    if isinstance(prompt, str):
        return bool(prompt.strip())
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "role" in m for m in prompt):
        return False
    return any(m["role"] == "user" and str(m.get("content") or "").strip() for m in prompt)


def split_source(data: DataConfig, split: str) -> DatasetSource:
    source = getattr(data, split)
    if source is None:
        raise DataError(f"data.{split} is not set in the recipe")
    return source


def load_rows(source: DatasetSource, what: str = "dataset") -> list[dict]:
    """The raw rows of a local file or hub dataset, as dicts; ``what`` names it in errors."""
    import datasets  # slow import, only needed here

    path = Path(source.path)
    if not path.exists() and path.suffix in LOCAL_FORMATS:
        raise DataError(f"could not load {what} {source.path!r}: no such file")
    try:
        if path.is_file():
            if path.suffix not in LOCAL_FORMATS:
                raise DataError(
                    f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(LOCAL_FORMATS)}"
                )
            dataset = datasets.load_dataset(LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
        elif source.max_rows is not None:  # a few rows of a hub dataset: stream them, skip the download
            with hub.reading(source.path, what):
                stream = datasets.load_dataset(source.path, source.subset, split=source.split, streaming=True)
                return list(stream.take(source.max_rows))
        else:
            with hub.reading(source.path, what):
                dataset = datasets.load_dataset(source.path, source.subset, split=source.split)
    except ReasonkitError:
        raise
    except Exception as exc:  # datasets raises many types for "not found / not readable"
        kind = "local path" if path.exists() else "local file or hub dataset id"
        raise DataError(
            f"could not load {what} {source.path!r} ({kind}): {type(exc).__name__}: {exc}"
        ) from None
    if source.max_rows is not None:
        dataset = dataset.select(range(min(source.max_rows, len(dataset))))
    return dataset.to_list()


def examples_from_rows(rows: list[dict], source: DatasetSource, *, need_trace: bool, on_invalid: str):
    columns = set(rows[0]) if rows else set()
    if source.messages_column is not None:
        needed = [source.messages_column]
    else:
        needed = [source.prompt_column, source.answer_column] + ([source.trace_column] if need_trace else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"dataset {source.path!r} has no column(s) {missing}; it has {sorted(columns)}. "
            "Set data.<split>.prompt_column / trace_column / answer_column (or messages_column) in the recipe."
        )
    examples, bad_rows = [], []
    for index, row in enumerate(rows):
        example = (
            _example_from_messages(row[source.messages_column])
            if source.messages_column
            else _example_from_columns(row, source)
        )
        problem = _problem(example, need_trace)
        if problem and source.messages_column and _has_tool_turns(row[source.messages_column]):
            problem += ": a conversation with tool turns, which an sft stage with `tools` trains on"
        if problem:
            bad_rows.append((index, problem))
            continue
        examples.append(TraceExample(example.prompt, example.trace if need_trace else None, example.answer))
    report_unusable(source, bad_rows, len(rows), on_invalid)
    return examples, LoadReport(rows=len(rows), skipped=len(bad_rows))


def report_unusable(
    source: DatasetSource, bad_rows: list[tuple[int, str]], total: int, on_invalid: str
) -> None:
    """Stop on unusable rows, naming them by number and reason, or skip them with a warning."""
    if not bad_rows:
        return
    listing = ", ".join(f"row {i} ({why})" for i, why in bad_rows[:SHOWN_ROWS])
    more = f" and {len(bad_rows) - SHOWN_ROWS} more" if len(bad_rows) > SHOWN_ROWS else ""
    message = f"dataset {source.path!r}: {len(bad_rows)} of {total} rows are unusable: {listing}{more}"
    if on_invalid == "error":
        raise DataError(message + ". Fix them, or set data.on_invalid: skip to drop them.")
    log.warning("%s. Skipped (data.on_invalid: skip).", message)


def _example_from_columns(row: dict, source: DatasetSource) -> TraceExample:
    answer = row.get(source.answer_column)
    # Gold answers are often numbers (csv files, GSM8K-style data); they are compared as text.
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    return TraceExample(row.get(source.prompt_column), row.get(source.trace_column), answer)


def _example_from_messages(messages) -> TraceExample:
    if not isinstance(messages, list):
        return TraceExample(None, None, None)
    user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    reply = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    if reply is None:
        return TraceExample(user, None, None)
    if reply.get("reasoning_content"):
        return TraceExample(user, reply["reasoning_content"], reply.get("content"))
    parsed = parse_completion(reply.get("content") or "")
    return TraceExample(user, parsed.trace, parsed.answer)


def _has_tool_turns(messages) -> bool:
    return isinstance(messages, list) and any(
        isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls")) for m in messages
    )


def _problem(example: TraceExample, need_trace: bool) -> str | None:
    """Why an example cannot be trained on, or None."""
    fields = {"prompt": example.prompt, "answer": example.answer}
    if need_trace:
        fields["trace"] = example.trace
    for name, value in fields.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"empty {name}"
        if not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    for name in ("trace", "answer"):
        text = fields.get(name) or ""
        if THINK_OPEN in text or THINK_CLOSE in text:
            return f"{name} contains a think tag"
    return None
