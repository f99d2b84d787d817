"""Rollouts on a vLLM server: step time of colocated vLLM vs server (sync) vs server + async_rollouts 1,
and the demo task's reward curve, synchronous vs one-step-off-policy, for the same number of samples.

    python benchmarks/server_async.py --out runs/bench_server [--steps 12] [--curve-steps 60]
    (--steps 0 or --curve-steps 0 skips that part; --model DIR reuses a distilled demo model)

1. The demo's `trace` model (distilled once, kept in OUT/trace; pass --model DIR to reuse one).
2. A server of it (`reasonkit vllm-serve`) on a free loopback port, on the same machine.
3. `--steps` GRPO steps of the demo's GRPO stage with each engine; median step time over steps 2..N.
4. `--curve-steps` steps synchronous and with async_rollouts 1; reward and accuracy per step, and a plot.
Results: OUT/results.json, OUT/reward_curve.png. Every run is `reasonkit run` in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))


def demo() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "demo" / "arithmetic.yaml").read_text())


def reasonkit_run(recipe: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "reasonkit", "run", str(path), "--overwrite"], check=True, env=env)


def trace_model(out: Path) -> Path:
    model = out / "trace" / "trace" / "model"
    if not model.is_dir():
        recipe = demo()
        recipe["output_dir"] = str(out / "trace")
        recipe["stages"] = {"trace": recipe["stages"]["trace"]}
        reasonkit_run(recipe, out / "trace")
    return model


def grpo_recipe(model: Path, output_dir: Path, steps: int, **stage) -> dict:
    recipe = demo()
    grpo = {**recipe["stages"]["grpo"], "init": "model", "max_steps": steps, "logging_steps": 1}
    grpo["save_steps"] = steps + 1
    return {
        "output_dir": str(output_dir),
        "seed": 0,
        "model": {"path": str(model)},
        "data": recipe["data"],
        "stages": {"grpo": {**grpo, **stage}},
        "report_to": ["jsonl"],
    }


def records(output_dir: Path) -> list[dict]:
    lines = (output_dir / "grpo" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_server")
    parser.add_argument("--model", type=Path, help="a trained demo model (default: distil the demo's trace)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--curve-steps", type=int, default=60)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = args.model.resolve() if args.model else trace_model(out)
    from tests.helpers.vllm_server_process import running_server

    results: dict = {"machine": f"{os.cpu_count()} CPU cores", "steps": args.steps}
    started = time.time()
    with running_server(model, out / "server.log") as server:
        results["server_start_seconds"] = round(time.time() - started, 1)
        on_server = {"engine": "vllm_server", "vllm_server": {"urls": [server.url]}}
        variants = {
            "colocated vllm": {"engine": "vllm"},
            "server sync": on_server,
            "server async_rollouts=1": {**on_server, "async_rollouts": 1},
        }
        for name, stage in variants.items() if args.steps else ():
            directory = out / "steps" / name.replace(" ", "_")
            reasonkit_run(grpo_recipe(model, directory, args.steps, **stage), directory)
            steps = records(directory)[1:]  # the first step warms up
            results[name] = {
                "median_step_seconds": statistics.median(r["step_seconds"] for r in steps),
                "median_generation_wait_seconds": statistics.median(r["generation_seconds"] for r in steps),
                "mean_weight_version_lag": statistics.mean(
                    r.get("weight_version_lag/mean", 0) for r in steps
                ),
            }
            print(name, results[name], flush=True)
        if args.steps:
            base = results["colocated vllm"]["median_step_seconds"]
            for name in variants:
                results[name]["vs_colocated"] = round(results[name]["median_step_seconds"] / base, 3)
        curves = {}
        for name, ahead in (("sync", 0), ("async=1", 1)) if args.curve_steps else ():
            directory = out / "curve" / name.replace("=", "")
            reasonkit_run(
                grpo_recipe(model, directory, args.curve_steps, **on_server, async_rollouts=ahead), directory
            )
            curves[name] = [
                {
                    k: r.get(k)
                    for k in (
                        "step",
                        "reward/mean",
                        "accuracy",
                        "importance_weight/capped",
                        "weight_version_lag/mean",
                        "step_seconds",
                    )
                }
                for r in records(directory)
            ]
        results["curves"] = curves
    results["load_average"] = os.getloadavg()  # other work on the machine slows every variant
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if curves:
        plot(curves, out / "reward_curve.png")
    print(json.dumps({k: v for k, v in results.items() if k != "curves"}, indent=2))


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of each value and the ``window - 1`` before it (fewer at the start).

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def plot(curves: dict, path: Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (name, rows), color in zip(curves.items(), ("tab:blue", "tab:orange")):
        steps = [r["step"] for r in rows]
        for axis, key in zip(axes, ("reward/mean", "weight_version_lag/mean")):
            values = [r[key] or 0.0 for r in rows]
            axis.plot(steps, values, color=color, alpha=0.3)
            axis.plot(
                steps, moving_average(values, window), color=color, label=f"{name} ({window}-step mean)"
            )
            axis.set_title(key)
            axis.set_xlabel("step (32 prompts x 8 samples each)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
