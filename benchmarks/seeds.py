"""Runs a demo's recipes on several seeds side by side, one process per seed on one thread.

Measured on the 2-core machine: three seeds side by side train an SFT stage at the rate of one process on
both threads (trace_base of recipes/demo/latent.yaml: 6.9 steps/s for the three together, 6.7 alone);
for the short steps of GRPO and decoding, one thread was the faster (the Makefile's note). Each seed's
output goes to ``<out>/seed-<N>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPES = Path(__file__).parents[1] / "recipes" / "demo"


def recipe_command(recipe: str, seed: int, folder: Path) -> list[str]:
    """``reasonkit run`` of ``recipes/demo/<recipe>`` with the seed and output folder set."""
    return [
        sys.executable,
        "-m",
        "reasonkit",
        "run",
        str(RECIPES / recipe),
        f"seed={seed}",
        f"output_dir={folder}",
        "--overwrite",
    ]


def run_seeds(commands: dict[int, list[list[str]]], out: Path) -> dict[int, float]:
    """Runs each seed's commands in order, all seeds at once; the wall seconds of each seed. Exits naming
    the logs of the seeds that failed, once every seed has finished.
    """
    out.mkdir(parents=True, exist_ok=True)

    def run(seed: int) -> tuple[float, int]:
        started = time.time()
        with open(out / f"seed-{seed}.log", "w") as log:
            for command in commands[seed]:
                done = subprocess.run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
                if done.returncode:
                    break
        seconds = time.time() - started
        print(f"seed {seed}: {'FAILED' if done.returncode else 'done'} in {seconds:.0f} s", flush=True)
        return seconds, done.returncode

    print(f"seeds {list(commands)} side by side; logs in {out}/seed-<N>.log", flush=True)
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        results = dict(zip(commands, pool.map(run, commands)))
    failed = [seed for seed, (_, code) in results.items() if code]
    if failed:
        raise SystemExit(
            f"seeds {failed} failed: see {', '.join(str(out / f'seed-{s}.log') for s in failed)}"
        )
    return {seed: seconds for seed, (seconds, _) in results.items()}


def demo_main(description: str, default_out: str, seed_commands: Callable, report: Callable) -> int:
    """The command line of a demo on several seeds: ``--seeds``, ``--out``, ``--report-only``. Runs
    ``seed_commands(seed, folder)`` for each seed, then ``report(out, seeds, seconds)`` (every seed's
    figures, with its ``floors``), written to ``<out>/comparison.json``; exits 1 when a floor fails."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--report-only", action="store_true", help="compare the runs already in --out")
    args = parser.parse_args()
    seconds = {}
    if not args.report_only:
        seconds = run_seeds({s: seed_commands(s, args.out / f"seed-{s}") for s in args.seeds}, args.out)
    per_seed = report(args.out, args.seeds, seconds)
    for seed, result in per_seed.items():
        checks = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["floors"].items())
        print(f"seed {seed} ({result['wall_seconds']:.0f} s): {checks}")
    every_seed = all(all(result["floors"].values()) for result in per_seed.values())
    comparison = {"seeds": per_seed, "floors_hold_on_every_seed": every_seed}
    (args.out / "comparison.json").write_text(json.dumps(comparison, indent=2))
    return 0 if every_seed else 1
