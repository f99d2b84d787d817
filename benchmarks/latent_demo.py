"""`make demo-latent`: recipes/demo/latent.yaml and recurrent.yaml on several seeds, then the models side by side.

    python benchmarks/latent_demo.py [--seeds 0 1 2] [--out runs/demo_latent] [--report-only]

The seeds run side by side, one thread each (benchmarks/seeds.py). Each runs latent.yaml into
``<out>/seed-<N>``, then recurrent.yaml (a recurrent-depth model on direct answers: its architecture
differs, hence its own recipe and base model) into ``<out>/seed-<N>/recurrent``, each with its own
summary.json, curves and diagnostics. Then ``<out>/comparison.json`` and ``comparison.png`` hold, per model, held-out pass@1 and generated tokens per problem on every seed, and the recurrent model's
pass@1 at each test-time depth; the floors the demo promises are checked on every seed: the model that thinks
the first two steps latently (latent_stage2) keeps >= 85% of the full-trace model's accuracy with <= 60%
of its generated tokens, and the full trace stays far above the direct answer (>= 30 points). The recurrent
model has no floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seeds import demo_main, recipe_command

RECURRENT_DIR = "recurrent"  # where in a seed's folder recurrent.yaml runs
# In the order the table and the figure show them.
MODELS = [
    "direct",
    "recurrent",
    "trace_base",
    "trace",
    "latent_stage1",
    "latent_stage2",
    "latent_grpo",
    "latent_stage3",
    "pause_stage3",
]


def seed_commands(seed: int, out: Path) -> list[list[str]]:
    return [
        recipe_command("latent.yaml", seed, out),
        recipe_command("recurrent.yaml", seed, out / RECURRENT_DIR),
    ]


def models_of(summary: dict) -> dict[str, dict]:
    """pass@1 and generated tokens of every model a seed's summary evaluated."""
    found = {}
    for stage in summary["stages"].values():
        for name, by_benchmark in stage.get("models", {}).items():
            result = by_benchmark["test"]
            found[name] = {
                "pass@1": result["pass@1"]["value"],
                "generated_tokens": result["generated_tokens"],
                "thoughts": result.get("thoughts", 0),
            }
            if "by_recurrence" in result:  # pass@1 (and iterations per token) at each test-time depth
                found[name]["by_recurrence"] = {
                    depth: {"pass@1": r["pass@1"]["value"], "iterations": r["recurrence_steps"]}
                    for depth, r in result["by_recurrence"].items()
                }
    return found


def floors(models: dict[str, dict]) -> dict[str, bool]:
    trace, latent, direct = models["trace"], models["latent_stage2"], models["direct"]
    return {
        "latent_stage2 >= 85% of trace accuracy": latent["pass@1"] >= 0.85 * trace["pass@1"],
        "latent_stage2 <= 60% of trace tokens": latent["generated_tokens"] <= 0.6 * trace["generated_tokens"],
        "trace >= direct + 30 points": trace["pass@1"] >= direct["pass@1"] + 0.30,
    }


def report(out: Path, seeds: list[int], seconds: dict[int, float]) -> dict:
    """Every seed's figures and floors (the table printed, comparison.png drawn)."""
    per_seed = {}
    for seed in seeds:
        folder = out / f"seed-{seed}"
        summaries = [json.loads((folder / "summary.json").read_text())]
        if (folder / RECURRENT_DIR / "summary.json").exists():
            summaries.append(json.loads((folder / RECURRENT_DIR / "summary.json").read_text()))
        per_seed[seed] = {
            "models": {name: m for summary in summaries for name, m in models_of(summary).items()},
            "wall_seconds": seconds.get(seed, sum(s["wall_seconds"] for s in summaries)),
        }
        per_seed[seed]["floors"] = floors(per_seed[seed]["models"])
    print(f"{'model':<15}" + "".join(f"  seed {s}: pass@1  tokens" for s in seeds))
    for name in MODELS:
        cells = []
        for seed in seeds:
            m = per_seed[seed]["models"].get(name)
            cells.append(f"  {m['pass@1']:>14.1%}  {m['generated_tokens']:>6.1f}" if m else " " * 24)
        print(f"{name:<15}" + "".join(cells))
    for seed in seeds:
        depths = per_seed[seed]["models"].get("recurrent", {}).get("by_recurrence", {})
        if depths:
            cells = ", ".join(f"{d} {r['pass@1']:.1%} ({r['iterations']:.1f} it.)" for d, r in depths.items())
            print(f"seed {seed} recurrent by depth: {cells}")
    plot(per_seed, out / "comparison.png")
    return per_seed


def side_by_side(tokens: dict[str, float], width: float = 1.0) -> dict[str, float]:
    """An x offset per model that sets side by side the models generating the same number of tokens (within
    ``width``): stage 2 and its GRPO, stage 3 and pause tokens, trace_base and trace would hide each other.

    >>> side_by_side({"a": 5.0, "b": 17.8, "c": 17.8, "d": 37.4})
    {'a': 0.0, 'b': -0.3, 'c': 0.3, 'd': 0.0}
    """
    groups: list[list[str]] = []
    for name in sorted(tokens, key=tokens.get):
        if groups and tokens[name] - tokens[groups[-1][0]] < width:
            groups[-1].append(name)
        else:
            groups.append([name])
    step = 0.6 * width
    return {name: (i - (len(group) - 1) / 2) * step for group in groups for i, name in enumerate(group)}


def plot(per_seed: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {name: [s["models"][name] for s in per_seed.values() if name in s["models"]] for name in MODELS}
    points = {name: found for name, found in points.items() if found}
    offsets = side_by_side({name: found[0]["generated_tokens"] for name, found in points.items()})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, name in enumerate(MODELS):
        if name not in points:
            continue
        ax.scatter(
            [p["generated_tokens"] + offsets[name] for p in points[name]],
            [p["pass@1"] for p in points[name]],
            label=name,
            color=f"C{index}",
        )
    ax.set(
        xlabel="generated tokens per problem",
        ylabel="held-out pass@1",
        ylim=(0, 1),
        title="one point per seed (models with equal tokens set side by side)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(demo_main(__doc__, "runs/demo_latent", seed_commands, report))
