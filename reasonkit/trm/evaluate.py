"""Evaluating a TRM on held-out puzzles: accuracy, test-time supervision steps, halting rules, and what
the recursion does.

Glossary: N puzzles, L cells, S supervision steps run at test time, T recursions per step.

- exact accuracy (every cell right) with a bootstrap interval over puzzles; cell accuracy over the cells
  the puzzle leaves to fill; validity, a label-free check that the answer obeys the rules and keeps the
  clues;
- the same after 1, 2, ... S supervision steps (S may exceed the steps used in training);
- three halting rules side by side: run all N_sup steps; stop when the Q head says halt (at most N_sup);
  stop when the answer state stops moving (relative change of y below a tolerance, at most S steps: a
  fixed-point test in the spirit of deep equilibrium models);
- the dynamics: per supervision step and recursion, the relative distance between consecutive latent
  and answer states, and the share of cells whose decoded answer changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from reasonkit.eval.metrics import bootstrap_interval, mean
from reasonkit.metrics import format_table
from reasonkit.trm.data import PuzzleKind, PuzzleSet
from reasonkit.trm.model import TRM


@dataclass
class StepRollout:
    answers: torch.Tensor  # [N, S, L] decoded answer after each supervision step (uint8)
    halt_logits: torch.Tensor | None  # [N, S]
    y_change: torch.Tensor  # [N, S] |y_s - y_{s-1}| / |y_{s-1}|


def relative_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """[B] |after - before| / |before| per example, over all cells and channels.

    >>> relative_change(torch.ones(1, 2, 2), torch.full((1, 2, 2), 1.5))
    tensor([0.5000])
    """
    return (after - before).flatten(1).norm(dim=1) / before.flatten(1).norm(dim=1).clamp_min(1e-12)


@torch.no_grad()
def roll_out(model: TRM, inputs: torch.Tensor, steps: int, batch_size: int) -> StepRollout:
    model.eval()
    answers, halts, changes = [], [], []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size]
        y, z = model.initial_state(len(x))
        per_step, halt, change = [], [], []
        for _ in range(steps):
            out = model(x, y, z)
            change.append(relative_change(y, out.y))
            per_step.append(out.logits.argmax(-1).to(torch.uint8))
            if out.halt_logits is not None:
                halt.append(out.halt_logits)
            y, z = out.y, out.z
        answers.append(torch.stack(per_step, 1))
        changes.append(torch.stack(change, 1))
        if halt:
            halts.append(torch.stack(halt, 1))
    return StepRollout(torch.cat(answers), torch.cat(halts) if halts else None, torch.cat(changes))


def puzzle_metrics(
    kind: PuzzleKind, data: PuzzleSet, answers: torch.Tensor, confidence: float = 0.95
) -> dict:
    """Exact accuracy with its bootstrap interval, cell accuracy on the cells to fill, and validity."""
    answers = answers.long()  # [N, L]
    exact = (answers == data.labels).all(-1).float().tolist()
    fill = kind.to_fill(data.inputs)
    cells = ((answers == data.labels) & fill).sum().item() / max(1, fill.sum().item())
    valid = [kind.is_valid(tuple(p.tolist()), tuple(a.tolist())) for p, a in zip(data.inputs, answers)]
    low, high = bootstrap_interval(exact, confidence=confidence)
    return {
        "exact_accuracy": mean(exact),
        "exact_low": low,
        "exact_high": high,
        "cell_accuracy": cells,
        "valid": mean([float(v) for v in valid]),
        "n": len(exact),
    }


def at_steps(rollout: StepRollout, steps: torch.Tensor) -> torch.Tensor:
    """[N, L] each puzzle's answer after its own number of steps (1-based) ``steps`` [N]."""
    return rollout.answers[torch.arange(len(steps)), steps - 1]


def halting_rules(rollout: StepRollout, trained_steps: int, tolerance: float) -> dict[str, torch.Tensor]:
    """Steps [N] each rule stops at: all N_sup, the Q head (first halt logit > 0, at most N_sup), and the
    fixed point (first step whose relative change of y is below ``tolerance``, at most all run)."""
    N, S = rollout.y_change.shape
    n_sup = min(trained_steps, S)

    def first(flags: torch.Tensor, cap: int) -> torch.Tensor:  # [N, S] bool -> [N] 1-based step
        hit = flags[:, :cap]
        found = hit.any(1)
        return torch.where(found, hit.float().argmax(1) + 1, torch.full((N,), cap))

    rules = {"all_steps": torch.full((N,), n_sup)}
    if rollout.halt_logits is not None:
        rules["q_head"] = first(rollout.halt_logits > 0, n_sup)
    rules["fixed_point"] = first(rollout.y_change < tolerance, S)
    return rules


def evaluate_split(
    model: TRM,
    kind: PuzzleKind,
    data: PuzzleSet,
    *,
    eval_steps: list[int],
    trained_steps: int,
    tolerance: float,
    batch_size: int,
    confidence: float,
) -> dict:
    """Every metric on one held-out set: ``by_steps`` (per test-time step count) and ``halting``."""
    rollout = roll_out(model, data.inputs, max(eval_steps), batch_size)
    result = puzzle_metrics(
        kind, data, rollout.answers[:, min(trained_steps, max(eval_steps)) - 1], confidence
    )
    result["by_steps"] = {
        str(k): puzzle_metrics(kind, data, rollout.answers[:, k - 1], confidence) for k in eval_steps
    }
    result["halting"] = {}
    if model.config.mode != "trm":
        return result
    for rule, steps in halting_rules(rollout, trained_steps, tolerance).items():
        metrics = puzzle_metrics(kind, data, at_steps(rollout, steps), confidence)
        result["halting"][rule] = {"average_steps": steps.float().mean().item(), **metrics}
    return result


@torch.no_grad()
def recursion_dynamics(model: TRM, inputs: torch.Tensor, steps: int) -> list[dict]:
    """Per supervision step s and recursion t: mean relative change of z (over its n updates) and of y,
    and the share of cells whose decoded answer the answer update changed."""
    model.eval()
    rows: list[dict] = []
    current: dict = {}

    def watch(kind: str, t: int, before: torch.Tensor, after: torch.Tensor) -> None:
        if kind == "z":
            current.setdefault(t, {"z": []})["z"].append(relative_change(before, after).mean().item())
            return
        changed = (model.decode(before) != model.decode(after)).float().mean().item()
        z_changes = current.pop(t)["z"]
        rows.append(
            {
                "recursion": t + 1,
                "z_change": sum(z_changes) / len(z_changes),
                "z_change_last": z_changes[-1],
                "y_change": relative_change(before, after).mean().item(),
                "cells_changed": changed,
            }
        )

    y, z = model.initial_state(len(inputs))
    for step in range(1, steps + 1):
        first = len(rows)
        out = model(inputs, y, z, watch=watch)
        for row in rows[first:]:
            row["step"] = step
        y, z = out.y, out.z
    return [{"step": r.pop("step"), **r} for r in rows]


def _figure(width: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, 3.2))


def _save(fig, ax, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_steps(by_steps: dict, trained_steps: int, path: Path, title: str) -> None:
    ks = sorted(int(k) for k in by_steps)
    fig, ax = _figure(5)
    ax.plot(ks, [by_steps[str(k)]["exact_accuracy"] for k in ks], marker="o", label="exact")
    ax.plot(ks, [by_steps[str(k)]["cell_accuracy"] for k in ks], marker=".", label="cell")
    ax.axvline(trained_steps, color="grey", linestyle=":", label=f"trained ({trained_steps})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("supervision steps at test time")
    ax.set_ylabel("accuracy")
    _save(fig, ax, title, path)


def plot_dynamics(rows: list[dict], path: Path, title: str) -> None:
    per_step = max(r["recursion"] for r in rows)
    x = [(r["step"] - 1) * per_step + r["recursion"] for r in rows]
    fig, ax = _figure(6)
    for key in ("z_change", "y_change", "cells_changed"):
        ax.plot(x, [max(r[key], 1e-7) for r in rows], marker=".", label=key)
    ax.set_yscale("log")
    ax.set_xlabel(f"recursion (supervision step x {per_step})")
    _save(fig, ax, title, path)


def evaluate_model(
    model: TRM,
    kind: PuzzleKind,
    splits: dict[str, PuzzleSet],
    out: Path,
    *,
    eval_steps: list[int],
    trained_steps: int,
    tolerance: float,
    batch_size: int,
    confidence: float,
    dynamics_examples: int = 256,
) -> dict:
    """Every held-out split, with tables and plots written to ``out``; returns {split: metrics} and
    ``dynamics`` (rows of recursion_dynamics on the first test puzzles)."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for name, data in splits.items():
        result = evaluate_split(
            model,
            kind,
            data,
            eval_steps=eval_steps,
            trained_steps=trained_steps,
            tolerance=tolerance,
            batch_size=batch_size,
            confidence=confidence,
        )
        results[name] = result
        if len(eval_steps) > 1:
            plot_steps(
                result["by_steps"], trained_steps, out / f"{name}_steps.png", f"{name}: accuracy vs steps"
            )
    if model.config.mode == "trm":
        rows = recursion_dynamics(model, splits["test"].inputs[:dynamics_examples], max(eval_steps))
        results["dynamics"] = rows
        plot_dynamics(rows, out / "dynamics.png", "change per recursion (test puzzles)")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def steps_table(result: dict) -> str:
    rows = [
        {
            "test steps": k,
            "exact": v["exact_accuracy"],
            "interval": f"{v['exact_low']:.3f}-{v['exact_high']:.3f}",
            "cell": v["cell_accuracy"],
            "valid": v["valid"],
        }
        for k, v in sorted(result["by_steps"].items(), key=lambda kv: int(kv[0]))
    ]
    return format_table(rows, ["test steps", "exact", "interval", "cell", "valid"])


def halting_table(result: dict) -> str:
    rows = [
        {
            "halting": rule,
            "avg steps": v["average_steps"],
            "exact": v["exact_accuracy"],
            "cell": v["cell_accuracy"],
        }
        for rule, v in result["halting"].items()
    ]
    return format_table(rows, ["halting", "avg steps", "exact", "cell"])


def dynamics_table(rows: list[dict], limit_steps: int | None = None) -> str:
    shown = [r for r in rows if limit_steps is None or r["step"] <= limit_steps]
    return format_table(
        shown, ["step", "recursion", "z_change", "z_change_last", "y_change", "cells_changed"]
    )


def report(results: dict, trained_steps: int) -> str:
    """The tables a person reads: per split accuracy vs test steps and halting; the dynamics."""
    parts = []
    for name, result in results.items():
        if name == "dynamics":
            continue
        parts.append(
            f"{name}: exact {result['exact_accuracy']:.3f} at {trained_steps} steps (n={result['n']})"
        )
        if "without_ema" in result:
            parts[-1] += (
                f"; the trained weights without the EMA: {result['without_ema']['exact_accuracy']:.3f}"
            )
        if len(result["by_steps"]) > 1:
            parts += [steps_table(result), halting_table(result)]
    if "dynamics" in results:
        parts += ["recursion dynamics (test puzzles):", dynamics_table(results["dynamics"], trained_steps)]
    return "\n\n".join(parts)
