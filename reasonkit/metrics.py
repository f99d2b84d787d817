"""What a user sees: metrics to JSONL (and TensorBoard, W&B), a plot of the curves, a summary table.

``report_to`` names where each stage's metrics go: ``jsonl`` (``metrics.jsonl``), ``tensorboard``
(``tensorboard/``) and ``wandb``: one W&B run per stage, opened by the pipeline (``tracked_stage``) with
the resolved recipe and the stage's objective as its config, the stage's metrics as its history and the
stage's summary as its summary. W&B reads its usual environment (``WANDB_PROJECT``, default
``reasonkit``; ``WANDB_MODE=offline`` writes the run under ``<output_dir>/wandb/`` without a network).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
from pathlib import Path

from reasonkit.errors import ReasonkitError

# report_to names that need a package of their own, and the extra that installs it.
TRACKER_PACKAGES = {"wandb": "wandb"}


class TrackerMissing(ReasonkitError, RuntimeError):
    """A tracker in ``report_to`` cannot be used (its package is not installed, no credentials); the
    message says what to do."""


def check_trackers(report_to: list[str]) -> None:
    """Fail before anything runs when a tracker in ``report_to`` cannot be imported or could not log."""
    for name in report_to:
        package = TRACKER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise TrackerMissing(
                f"report_to: {name} needs the {package} package, which is not installed: "
                f"pip install 'reasonkit[{name}]' (or pip install {package}), or remove {name} from report_to"
            )
    if "wandb" in report_to and not _wandb_can_log():
        raise TrackerMissing(WANDB_LOGIN)


WANDB_LOGIN = (
    "report_to: wandb has no credentials here: run `wandb login` (or set WANDB_API_KEY), or set "
    "WANDB_MODE=offline to write the runs locally (`wandb sync` uploads them later), or remove wandb"
)


def _wandb_can_log() -> bool:
    """Offline or disabled, an API key in the environment, or a login saved in ~/.netrc (`wandb login`)."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbRun:
    """One W&B run: a stage's metrics, its config (recipe, objective) and its summary."""

    def __init__(
        self, directory: str | Path, *, name: str, group: str | None, job_type: str | None, config: dict
    ):
        import wandb

        Path(directory).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or "reasonkit",
                name=name,
                group=group,
                job_type=job_type,
                dir=str(directory),
                config=config,
            )
        except wandb.errors.Error as exc:  # no credentials, no network, a refused project, ...
            raise TrackerMissing(f"W&B could not start the stage's run ({exc}). {WANDB_LOGIN}") from None

    def log(self, step: int, metrics: dict) -> None:
        self.run.log({k: v for k, v in metrics.items() if _is_number(v)}, step=step)

    def summarize(self, summary: dict) -> None:
        self.run.summary.update(summary)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


# The run of the stage being trained, which the stage's MetricsLog reports to (set by tracked_stage).
_stage_runs: list[WandbRun] = []


@contextlib.contextmanager
def tracked_stage(
    report_to: list[str], directory: str | Path, *, name: str, group: str, job_type: str, config: dict
):
    """The stage's tracker run for its ``MetricsLog`` to report to; yields it, or None when ``report_to``
    names no tracker. The run is finished on the way out (marked failed when the stage raised)."""
    if "wandb" not in report_to:
        yield None
        return
    check_trackers(report_to)
    run = WandbRun(directory, name=name, group=group, job_type=job_type, config=config)
    _stage_runs.append(run)
    try:
        yield run
    except BaseException:
        run.finish(exit_code=1)
        raise
    else:
        run.finish()
    finally:
        _stage_runs.remove(run)


class JsonlWriter:
    """Appends one JSON object per line; each line is flushed so a killed run keeps its history."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class MetricsLog:
    """Each logged step goes to ``metrics.jsonl`` and, when asked for, to TensorBoard under ``tensorboard/``
    and to the stage's W&B run (the pipeline's, or one of its own when a trainer runs without it)."""

    def __init__(self, directory: str | Path, report_to: list[str]):
        directory = Path(directory)
        self.directory = directory
        self.jsonl = JsonlWriter(directory / "metrics.jsonl") if "jsonl" in report_to else None
        self.tensorboard = None
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(directory / "tensorboard"))
        self.wandb, self._own_wandb = None, False
        if "wandb" in report_to:
            if _stage_runs:
                self.wandb = _stage_runs[-1]
            else:
                check_trackers(report_to)
                self.wandb = WandbRun(directory, name=directory.name, group=None, job_type=None, config={})
                self._own_wandb = True

    def log(self, step: int, metrics: dict) -> None:
        if self.jsonl:
            self.jsonl.write({"step": step, **metrics})
        if self.tensorboard:
            for key, value in metrics.items():
                if _is_number(value):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()
        if self.wandb:
            self.wandb.log(step, metrics)

    def log_completions(self, step: int, table: dict[str, list]) -> None:
        """One batch's completions with the columns rewards logged about them (``log_extra``), as one line
        of ``completions.jsonl``: ``{"step": ..., "prompt": [...], "completion": [...], "<reward>/<column>": [...]}``."""
        JsonlWriter(self.directory / "completions.jsonl").write({"step": step, **table})

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
        if self._own_wandb:
            self.wandb.finish()


def reward_logs(logs, gather, prompts: list, completions: list[str]) -> tuple[dict[str, float], dict | None]:
    """What the rewards logged while scoring a batch (``rewards.pool.BatchLogs``), over every process.

    Returns the metrics (``reward/<reward>/<name>``: the mean of what ``log_metric`` got) and, when a
    reward logged columns with ``log_extra``, the batch as a table for ``MetricsLog.log_completions``
    (else None). ``gather(list) -> list`` concatenates over processes: call this on every process.
    """
    total = logs.gathered(gather)
    if not total.extra:
        return total.metric_means(), None
    table = {
        "prompt": gather(list(prompts)),
        "completion": gather(list(completions)),
        **total.extra_columns(),
    }
    return total.metric_means(), table


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
    """One panel per numeric metric against ``x_key`` (see ``curve_panels``); returns the PNG's path
    (None if nothing to plot)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    panels = curve_panels(records, x_key)
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, (key, series) in zip(axes.flat, panels.items()):
        for name, label in series.items():
            points = [(r[x_key], r[name]) for r in records if _is_number(r.get(name)) and x_key in r]
            ax.plot(*zip(*points), linewidth=1.2, label=label)
        if len(series) > 1:
            ax.legend(fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return Path(png_path)


def curve_panels(records: list[dict], x_key: str = "step") -> dict[str, dict[str, str]]:
    """The panels ``plot_curves`` draws, in order: each metric's series, by the label each line gets.

    A metric ``<name>/<column>=<value>`` (GRPO's ``metrics_by``) is a line in ``<name>``'s panel, beside
    the whole batch's: a part of the batch that moves shows against an average that barely does.

    >>> records = [{"step": s, "accuracy": s / 4, "accuracy/style=quick": s / 2, "kl": 0.0} for s in (1, 2)]
    >>> curve_panels(records)
    {'accuracy': {'accuracy': 'all', 'accuracy/style=quick': 'style=quick'}}
    """
    numeric = {k for r in records for k, v in r.items() if k != x_key and _is_number(v)}
    parts = {k: k.rsplit("/", 1) for k in numeric if "=" in k.rsplit("/", 1)[-1]}
    parts = {k: (base, label) for k, (base, label) in parts.items() if base in numeric}
    keys = sorted(numeric - set(parts), key=_panel_order)
    # A series that never changes (KL with beta = 0, a constant learning rate) is left out: it says nothing.
    keys = [k for k in keys if len({r[k] for r in records if k in r}) > 1]
    panels = {}
    for key in keys:
        mine = sorted((k, label) for k, (base, label) in parts.items() if base == key)
        panels[key] = {key: "all", **dict(mine)} if mine else {key: key}
    return panels


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
