"""What a GRPO step logs, and the stage's summary from the logged steps."""

from __future__ import annotations

import math

from reasonkit.data import DataError
from reasonkit.grpo.batch import Scored, Selection

MAX_METRICS_VALUES = 20  # per-value curves of a column with more values would be unreadable


def mean_present(values) -> float:
    """The mean of the values that are not None (nan when there are none)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def step_metrics(scored: Scored, selection: Selection, num_generations: int, prompt_tokens: int) -> dict:
    """Rewards, lengths and what trained, over the whole batch (``prompt_tokens``: of every process)."""
    scores, excluded, lengths = scored.scores, selection.excluded, selection.lengths
    count = len(selection.advantages)
    zero_variance = (selection.advantages.reshape(-1, num_generations) == 0).all(dim=1)
    return {
        "reward/mean": scores.total[~excluded].mean().item(),
        "reward/std": scores.total[~excluded].std(unbiased=False).item(),
        **{f"reward/{name}/mean": mean_present(values) for name, values in scores.by_reward.items()},
        **{f"reward/{name}/none": values.count(None) / count for name, values in scores.by_reward.items()},
        **{f"reward/{name}/failed": failed / count for name, failed in scores.failed.items()},
        "reward/unscored": scores.unscored / count,
        "excluded": excluded.float().mean().item(),  # left out of the loss and of group statistics
        "completion_length": lengths.mean().item(),
        "truncated": selection.truncated.float().mean().item(),
        "zero_variance_groups": zero_variance.float().mean().item(),
        "skipped": 1 - selection.runs.float().mean().item(),  # completions whose forward passes did not run
        "tokens": lengths.sum().item() + prompt_tokens,
        **scored.logged,  # what rewards logged with log_metric
    }


def check_metrics_by(column: str | None, rows: list[dict]) -> None:
    """Fail before the first step when ``metrics_by`` names no column of the prompt data, or one with so
    many values (an id, a free-text field) that per-value curves would say nothing."""
    if column is None:
        return
    if column == "prompt" or column not in rows[0]:
        others = sorted(k for k in rows[0] if k != "prompt")
        raise DataError(f"metrics_by: {column!r} is not a column of the prompt data; it has {others}")
    count = len({str(row[column]) for row in rows})
    if count > MAX_METRICS_VALUES:
        raise DataError(
            f"metrics_by: column {column!r} has {count} different values; per-value metrics need one with "
            f"at most {MAX_METRICS_VALUES} (a category or a level)"
        )


def metrics_by_value(
    column: str, values: list, rewards: list[float], correct: list[float | None] | None
) -> dict:
    """The mean reward and accuracy of each value of a data ``column`` (``values``: one per completion,
    aligned with ``rewards``, the ones a failed reward left out already dropped as None, and ``correct``:
    1.0/0.0, None where the gold answer is unreadable). A batch can move little on average while a part
    of it moves a lot: these say which part.

    >>> metrics_by_value("style", ["quick", "quick", "plain", "plain"], [1.0, 0.0, 1.0, None], [1.0, 0.0, 1.0, 1.0])
    {'reward/mean/style=plain': 1.0, 'accuracy/style=plain': 1.0, 'reward/mean/style=quick': 0.5, 'accuracy/style=quick': 0.5}
    """
    metrics = {}
    for value in sorted({str(v) for v in values}):
        rows = [i for i, v in enumerate(values) if str(v) == value]
        metrics[f"reward/mean/{column}={value}"] = mean_present(rewards[i] for i in rows)
        if correct is not None:
            metrics[f"accuracy/{column}={value}"] = mean_present(correct[i] for i in rows)
    return metrics


def run_summary(records: list[dict], steps: int, metrics_by: str | None = None) -> dict:
    """Reward (and accuracy) at the start and the end: the means of the first and of the last tenth of
    the logged steps (one step alone is mostly noise: which prompts it drew). With ``metrics_by``, the
    same per value of that column, under ``by_<column>``."""
    if not records:
        return {"steps": steps}
    summary = {"steps": steps, **_first_and_last(records, "reward/mean", "reward")}
    summary.update(_first_and_last(records, "accuracy", "accuracy"))
    # with tools: how often the model calls them, and how often a call fails, as training went on
    summary.update(_first_and_last(records, "tools/calls_per_completion", "tool_calls"))
    summary.update(_first_and_last(records, "tools/failed_share", "failed_tool_calls"))
    if metrics_by:
        prefix = f"reward/mean/{metrics_by}="
        values = sorted({k[len(prefix) :] for r in records for k in r if k.startswith(prefix)})
        summary[f"by_{metrics_by}"] = {
            value: {
                **_first_and_last(records, f"{prefix}{value}", "reward"),
                **_first_and_last(records, f"accuracy/{metrics_by}={value}", "accuracy"),
            }
            for value in values
        }
    return summary


def _first_and_last(records: list[dict], key: str, name: str) -> dict:
    """``first_<name>`` and ``last_<name>``: the means of ``key`` over the first and the last tenth of the
    records that have it (none: nothing)."""
    present = [r[key] for r in records if key in r]
    if not present:
        return {}
    window = max(1, len(present) // 10)
    return {f"first_{name}": mean_present(present[:window]), f"last_{name}": mean_present(present[-window:])}
