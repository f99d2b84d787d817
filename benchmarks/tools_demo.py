"""`make demo-tools`: recipes/demo/tools.yaml on several seeds side by side, then the models compared.

    python benchmarks/tools_demo.py [--seeds 0 1 2] [--out runs/demo_tools] [--report-only]

Each seed runs into ``<out>/seed-<N>`` with its own summary.json and curves. ``<out>/comparison.json`` and
``comparison.png`` hold, per model, held-out pass@1 greedily with the calculator (and without it for the
models trained without tools), calls per completion and the share that failed, and what GRPO changed. The
floors the demo promises are checked on every seed: the model trained on traces with calculator calls
reaches >= 90% and >= 30 points over the plain-trace model, and GRPO with the calculator does not fall
below the model it started from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seeds import demo_main, recipe_command

MODELS = ["direct", "trace", "tool_trace", "grpo"]  # in the order the table and the figure show them


def seed_commands(seed: int, out: Path) -> list[list[str]]:
    return [recipe_command("tools.yaml", seed, out)]


def models_of(summary: dict) -> dict[str, dict]:
    """Per model: pass@1 with the calculator, calls per completion and failed share, and pass@1 without
    tools where the recipe evaluates that too."""
    models = {}
    for name, by_benchmark in summary["stages"]["eval"]["models"].items():
        result = by_benchmark["test"]
        models[name] = {
            "pass@1": result["pass@1"]["value"],
            "tool_calls": result.get("tools/calls_per_completion", 0.0),
            "failed_calls": result.get("tools/failed_share", 0.0),
            "generated_tokens": result["generated_tokens"],
        }
    for name, by_benchmark in summary["stages"].get("eval_no_tools", {}).get("models", {}).items():
        models[name]["pass@1 without tools"] = by_benchmark["test"]["pass@1"]["value"]
    return models


def grpo_changes(summary: dict) -> dict:
    """The GRPO stage's reward, calls per completion and failed share at its start and its end."""
    grpo = summary["stages"]["grpo"]
    keys = ["reward", "tool_calls", "failed_tool_calls"]
    return {f"{end}_{key}": grpo[f"{end}_{key}"] for key in keys for end in ("first", "last")}


def floors(models: dict[str, dict]) -> dict[str, bool]:
    tool, trace, grpo = models["tool_trace"]["pass@1"], models["trace"]["pass@1"], models["grpo"]["pass@1"]
    return {
        "tool_trace >= 90%": tool >= 0.90,
        "tool_trace >= trace + 30 points": tool >= trace + 0.30,
        "grpo >= tool_trace": grpo >= tool,
    }


def report(out: Path, seeds: list[int], seconds: dict[int, float]) -> dict:
    """Every seed's figures and floors (the table printed, comparison.png drawn)."""
    per_seed = {}
    for seed in seeds:
        summary = json.loads((out / f"seed-{seed}" / "summary.json").read_text())
        models = models_of(summary)
        per_seed[seed] = {
            "models": models,
            "grpo": grpo_changes(summary),
            "floors": floors(models),
            "wall_seconds": seconds.get(seed, summary["wall_seconds"]),
        }
    print(f"{'model':<11}" + "".join(f"  seed {s}: pass@1 (no tools)  calls" for s in seeds))
    for name in MODELS:
        cells = []
        for seed in seeds:
            m = per_seed[seed]["models"][name]
            without = m.get("pass@1 without tools")
            cells.append(
                f"  {m['pass@1']:>14.1%} "
                + (f"({without:>5.1%})" if without is not None else " " * 7)
                + f"  {m['tool_calls']:>5.2f}"
            )
        print(f"{name:<11}" + "".join(cells))
    for seed in seeds:
        g = per_seed[seed]["grpo"]
        print(
            f"seed {seed} grpo, sampled (first -> last tenth of the steps): reward {g['first_reward']:.3f} -> "
            f"{g['last_reward']:.3f}, calls per completion {g['first_tool_calls']:.2f} -> "
            f"{g['last_tool_calls']:.2f}, failed calls {g['first_failed_tool_calls']:.1%} -> "
            f"{g['last_failed_tool_calls']:.1%}"
        )
    plot(per_seed, out / "comparison.png")
    return per_seed


def plot(per_seed: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(per_seed)
    for index, (seed, result) in enumerate(per_seed.items()):
        ax.bar(
            [m + index * width for m in range(len(MODELS))],
            [result["models"][name]["pass@1"] for name in MODELS],
            width,
            label=f"seed {seed}",
        )
    ax.set_xticks([m + width * (len(per_seed) - 1) / 2 for m in range(len(MODELS))], MODELS)
    ax.set(ylabel="held-out pass@1, greedy, with the calculator", ylim=(0, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(demo_main(__doc__, "runs/demo_tools", seed_commands, report))
