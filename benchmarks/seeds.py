"""Runs a demo's recipes on several seeds at once, one process per seed, each on one thread.

The tiny demo models train faster on one thread per process than on two (the Makefile's note), so on a
small CPU the seeds run side by side rather than one after another. Each seed's output goes to
``<out>/seed-<N>.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
    """Runs each seed's commands in order, all seeds at once; the wall seconds of each seed.

    Exits naming the logs of the seeds that failed, once every seed has finished.
    """
    out.mkdir(parents=True, exist_ok=True)

    def run(seed: int) -> tuple[float, int]:
        started = time.time()
        with open(out / f"seed-{seed}.log", "w") as log:
            for command in commands[seed]:
                done = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
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
