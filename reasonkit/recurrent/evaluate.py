"""A recurrent-depth model's evaluation: accuracy as a function of the test-time depth.

The headline result is at the training mean r (what the model does unless told otherwise); each r of the
stage's ``recurrences`` and, with ``exit_kl``, the adaptive exit (capped at the deepest r) are evaluated on
the same problems with the same engine, under ``by_recurrence`` keyed by ``Depth.label()``; then the
diagnostics (``diagnostics.py``) of the deepest r.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reasonkit.recurrent.diagnostics import plot_recurrence, state_dynamics, write_diagnostics
from reasonkit.recurrent.engine import Depth, RecurrentEngine

# What `by_recurrence` keeps of each depth's result.
DEPTH_FIELDS = (
    "pass@1",
    "generated_tokens",
    "format_errors",
    "max_recurrences",
    "recurrence_steps",
    "recurrence_histogram",
)
DIAGNOSED_PROBLEMS = 200  # prompts whose state dynamics are measured


def depths(recurrences: list[int], exit_kl: float | None, mean_recurrence: int) -> list[Depth]:
    """The depths to evaluate: the training mean first, then each other r, then the adaptive exit.

    >>> [d.label() for d in depths([1, 4, 16], 5e-4, 4)]
    ['r=4', 'r=1', 'r=16', 'exit']
    """
    fixed = list(dict.fromkeys([mean_recurrence, *recurrences]))
    return [Depth(r) for r in fixed] + ([Depth(max(fixed), exit_kl)] if exit_kl is not None else [])


def evaluate_depths(
    engine: RecurrentEngine,
    evaluate_at: Callable[[str], dict],
    recurrences: list[int],
    exit_kl: float | None,
    prompts: list[str],
    diagnostics_dir: Path,
    label: str,
) -> dict:
    """``evaluate_at(stem suffix)`` once per depth, the engine set to it; the headline result with
    ``by_recurrence``, after writing the diagnostics of ``prompts`` (rendered) to ``diagnostics_dir``."""
    mean = engine.model.config.mean_recurrence
    by_depth = {}
    for depth in depths(recurrences, exit_kl, mean):
        engine.depth = depth
        by_depth[depth.label()] = evaluate_at(f".{depth.label()}" if depth != Depth(mean) else "")
        by_depth[depth.label()]["max_recurrences"] = depth.recurrences
    result = by_depth[Depth(mean).label()]
    result["by_recurrence"] = {
        name: {key: found[key] for key in DEPTH_FIELDS if key in found} for name, found in by_depth.items()
    }
    deepest = max([mean, *recurrences])
    dynamics = state_dynamics(engine.model, engine.tokenizer, prompts[:DIAGNOSED_PROBLEMS], deepest)
    write_diagnostics(diagnostics_dir / f"{label}.json", dynamics, result["by_recurrence"])
    plot_recurrence(diagnostics_dir)
    return result
