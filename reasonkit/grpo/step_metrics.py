"""What a GRPO step logs, and the stage's summary from the logged steps."""

from __future__ import annotations

import math

from reasonkit.grpo.batch import Scored, Selection


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


def run_summary(records: list[dict], steps: int) -> dict:
    """First and last reward (and accuracy): the first logged step, and the mean of the last tenth."""
    if not records:
        return {"steps": steps}
    window = records[-max(1, len(records) // 10) :]
    summary = {
        "steps": steps,
        "first_reward": records[0]["reward/mean"],
        "last_reward": mean_present([r["reward/mean"] for r in window]),
    }
    if "accuracy" in records[0]:
        summary.update(
            first_accuracy=records[0]["accuracy"], last_accuracy=mean_present([r["accuracy"] for r in window])
        )
    return summary
