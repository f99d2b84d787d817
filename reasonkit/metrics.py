"""What a user sees: metrics to JSONL (and TensorBoard), a plot of the curves, a summary table."""

from __future__ import annotations

import json
import math
from pathlib import Path


class JsonlWriter:
    """Appends one JSON object per line; each line is flushed so a killed run keeps its history."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class MetricsLog:
    """Each logged step goes to ``metrics.jsonl`` and, when asked for, to TensorBoard under ``tensorboard/``."""

    def __init__(self, directory: str | Path, report_to: list[str]):
        directory = Path(directory)
        self.jsonl = JsonlWriter(directory / "metrics.jsonl") if "jsonl" in report_to else None
        self.tensorboard = None
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(directory / "tensorboard"))

    def log(self, step: int, metrics: dict) -> None:
        if self.jsonl:
            self.jsonl.write({"step": step, **metrics})
        if self.tensorboard:
            for key, value in metrics.items():
                if _is_number(value):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Drop records logged after ``last_step`` (a resumed run logs those steps again)."""
    path = Path(path)
    if path.exists():
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_curves(
    records: list[dict], png_path: str | Path, x_key: str = "step", title: str = ""
) -> Path | None:
    """One panel per numeric metric against ``x_key``; returns the PNG's path (None if nothing to plot)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    keys = sorted(
        {k for r in records for k, v in r.items() if k != x_key and _is_number(v)}, key=_panel_order
    )
    # A series that never changes (KL with beta = 0, a constant learning rate) is left out: it says nothing.
    keys = [k for k in keys if len({r[k] for r in records if k in r}) > 1]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r[x_key], r[key]) for r in records if key in r and x_key in r]
        ax.plot(*zip(*points), linewidth=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return Path(png_path)


FIRST_PANELS = ["reward/mean", "accuracy", "loss", "kl", "entropy", "completion_length", "learning_rate"]


def _panel_order(key: str) -> tuple:
    """The curves a person looks at first, then the rest alphabetically."""
    return (FIRST_PANELS.index(key) if key in FIRST_PANELS else len(FIRST_PANELS), key)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table of ``rows`` (dicts) with the given columns."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
