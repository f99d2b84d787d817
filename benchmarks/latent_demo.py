"""`make demo-latent`: recipes/demo/latent.yaml on several seeds, then the models side by side.

    python benchmarks/latent_demo.py [--seeds 0 1 2] [--out runs/demo_latent] [--report-only]

Each seed runs the recipe into ``<out>/seed-<N>`` (its own summary.json, curves, diagnostics). Then
``<out>/comparison.json`` and ``comparison.png`` hold, per model, held-out pass@1 and generated tokens per
problem on every seed, and the floors the demo promises are checked on every seed: the model that thinks
the first two steps latently (latent_stage2) keeps >= 85% of the full-trace model's accuracy with <= 60%
of its generated tokens, and the full trace stays far above the direct answer (>= 30 points).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "latent.yaml"
# In the order the table and the figure show them.
MODELS = [
    "direct",
    "trace_base",
    "trace",
    "latent_stage1",
    "latent_stage2",
    "latent_grpo",
    "latent_stage3",
    "pause_stage3",
]


def run_seed(seed: int, out: Path) -> float:
    started = time.time()
    command = [
        sys.executable,
        "-m",
        "reasonkit",
        "run",
        str(RECIPE),
        f"seed={seed}",
        f"output_dir={out}",
        "--overwrite",
    ]
    subprocess.run(command, check=True)
    return time.time() - started


def models_of(summary: dict) -> dict[str, dict]:
    """pass@1 and generated tokens of every model a seed's summary evaluated."""
    found = {}
    for stage in summary["stages"].values():
        for name, by_benchmark in stage.get("models", {}).items():
            result = by_benchmark["test"]
            # latent_two evaluates latent_stage2 again (the same curriculum): the first figure stands
            found.setdefault(
                name,
                {
                    "pass@1": result["pass@1"]["value"],
                    "generated_tokens": result["generated_tokens"],
                    "thoughts": result.get("thoughts", 0),
                },
            )
    return found


def floors(models: dict[str, dict]) -> dict[str, bool]:
    trace, latent, direct = models["trace"], models["latent_stage2"], models["direct"]
    return {
        "latent_stage2 >= 85% of trace accuracy": latent["pass@1"] >= 0.85 * trace["pass@1"],
        "latent_stage2 <= 60% of trace tokens": latent["generated_tokens"] <= 0.6 * trace["generated_tokens"],
        "trace >= direct + 30 points": trace["pass@1"] >= direct["pass@1"] + 0.30,
    }


def report(out: Path, seeds: list[int], seconds: dict[int, float]) -> dict:
    per_seed = {}
    for seed in seeds:
        summary = json.loads((out / f"seed-{seed}" / "summary.json").read_text())
        per_seed[seed] = {
            "models": models_of(summary),
            "wall_seconds": seconds.get(seed, summary["wall_seconds"]),
        }
        per_seed[seed]["floors"] = floors(per_seed[seed]["models"])
    comparison = {
        "seeds": per_seed,
        "floors_hold_on_every_seed": all(all(s["floors"].values()) for s in per_seed.values()),
    }
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2))
    print(f"{'model':<15}" + "".join(f"  seed {s}: pass@1  tokens" for s in seeds))
    for name in MODELS:
        cells = []
        for seed in seeds:
            m = per_seed[seed]["models"].get(name)
            cells.append(f"  {m['pass@1']:>14.1%}  {m['generated_tokens']:>6.1f}" if m else " " * 24)
        print(f"{name:<15}" + "".join(cells))
    for seed in seeds:
        checks = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in per_seed[seed]["floors"].items())
        print(f"seed {seed} ({per_seed[seed]['wall_seconds']:.0f} s): {checks}")
    plot(per_seed, out / "comparison.png")
    return comparison


def plot(per_seed: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, name in enumerate(MODELS):
        points = [s["models"][name] for s in per_seed.values() if name in s["models"]]
        if not points:
            continue
        ax.scatter(
            [p["generated_tokens"] for p in points],
            [p["pass@1"] for p in points],
            label=name,
            color=f"C{index}",
        )
    ax.set(
        xlabel="generated tokens per problem",
        ylabel="held-out pass@1",
        ylim=(0, 1),
        title="one point per seed",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_latent"))
    parser.add_argument("--report-only", action="store_true", help="compare the runs already in --out")
    args = parser.parse_args()
    seconds = {}
    if not args.report_only:
        for seed in args.seeds:
            seconds[seed] = run_seed(seed, args.out / f"seed-{seed}")
    comparison = report(args.out, args.seeds, seconds)
    return 0 if comparison["floors_hold_on_every_seed"] else 1


if __name__ == "__main__":
    sys.exit(main())
