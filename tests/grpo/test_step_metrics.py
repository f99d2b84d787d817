import math

import pytest

from reasonkit import metrics
from reasonkit.data import DataError
from reasonkit.grpo.step_metrics import check_metrics_by, metrics_by_value, run_summary


def test_per_value_curves_join_their_metrics_panel():
    records = [
        {
            "step": s,
            "reward/mean": s,
            "reward/mean/style=quick": 2 * s,
            "reward/mean/style=plain": 0.5,
            "x/k=v": s,
        }
        for s in (1, 2, 3)
    ]
    assert metrics.curve_panels(records) == {
        "reward/mean": {
            "reward/mean": "all",
            "reward/mean/style=plain": "style=plain",
            "reward/mean/style=quick": "style=quick",
        },
        "x/k=v": {"x/k=v": "x/k=v"},  # no metric `x` to stand beside: a panel of its own
    }


def test_metrics_by_value_leaves_out_what_cannot_be_judged():
    values = ["a", "a", "a", "b", 3]  # values are compared as text: a level may be a number
    rewards = [1.0, None, 0.0, 0.5, 0.25]  # None: a failed reward left the completion out
    correct = [1.0, 1.0, None, 0.0, 1.0]  # None: an unreadable gold answer
    assert metrics_by_value("kind", values, rewards, correct) == {
        "reward/mean/kind=3": 0.25,
        "accuracy/kind=3": 1.0,
        "reward/mean/kind=a": 0.5,
        "accuracy/kind=a": 1.0,
        "reward/mean/kind=b": 0.5,
        "accuracy/kind=b": 0.0,
    }
    assert metrics_by_value("kind", ["a"], [1.0], None) == {"reward/mean/kind=a": 1.0}  # no answers


def test_run_summary_compares_the_first_and_last_tenth_overall_and_per_value():
    records = [{"step": s, "reward/mean": s / 20, "accuracy": 1 - s / 20} for s in range(1, 21)]
    for r in records:
        r["reward/mean/style=quick"] = r["step"] / 10
        if r["step"] % 2:  # a value absent from some steps' batches: its tenth is of the steps it is in
            r["accuracy/style=quick"] = r["step"] / 100
    summary = run_summary(records, 20, "style")
    assert summary["steps"] == 20
    assert summary["first_reward"] == pytest.approx((0.05 + 0.10) / 2)
    assert summary["last_reward"] == pytest.approx((0.95 + 1.0) / 2)
    assert summary["first_accuracy"] == pytest.approx(1 - 0.075) and summary[
        "last_accuracy"
    ] == pytest.approx(0.025)
    quick = summary["by_style"]["quick"]
    assert quick["first_reward"] == pytest.approx(0.15) and quick["last_reward"] == pytest.approx(1.95)
    assert quick["first_accuracy"] == pytest.approx(0.01) and quick["last_accuracy"] == pytest.approx(0.19)
    assert list(summary["by_style"]) == ["quick"]
    assert "by_style" not in run_summary(records, 20)
    assert run_summary([], 0) == {"steps": 0}


def test_metrics_by_must_name_a_column_with_a_few_values():
    rows = [{"prompt": f"p{i}", "answer": str(i), "style": "quick" if i % 3 else "plain"} for i in range(30)]
    check_metrics_by("style", rows)
    check_metrics_by(None, rows)
    with pytest.raises(
        DataError, match=r"'level' is not a column of the prompt data; it has \['answer', 'style'\]"
    ):
        check_metrics_by("level", rows)
    with pytest.raises(DataError, match="'answer' has 30 different values"):
        check_metrics_by("answer", rows)
    with pytest.raises(DataError, match="not a column"):
        check_metrics_by("prompt", rows)  # the prompt is not a column rewards (or metrics) are given


def test_nan_when_a_value_has_nothing_judged():
    assert math.isnan(metrics_by_value("kind", ["a"], [None], [None])["accuracy/kind=a"])
