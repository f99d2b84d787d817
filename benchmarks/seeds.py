"""Runs a demo's recipes on several seeds, side by side (one thread each) or one after another (every core).

Which is faster depends on the demo (measured on 2 cores): `make demo-tools`, whose GRPO and evaluation
generate token by token (short steps, where a second thread costs more than it gives: the Makefile's
note), runs its three seeds side by side; `make demo-latent`, mostly SFT and curriculum steps on batches
of 32, trains 15% slower that way (3 x 1 thread: 6.9 steps/s together on trace_base, 1 process x 2
threads: 8.1) and runs them one after another. Each seed's output goes to ``<out>/seed-<N>.log``.
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


def run_seeds(commands: dict[int, list[list[str]]], out: Path, side_by_side: bool) -> dict[int, float]:
    """Runs each seed's commands in order, the seeds all at once or one after another; the wall seconds of
    each seed. Exits naming the logs of the seeds that failed, once every seed has finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    threads = "1" if side_by_side else str(os.cpu_count() or 1)

    def run(seed: int) -> tuple[float, int]:
        started = time.time()
        with open(out / f"seed-{seed}.log", "w") as log:
            for command in commands[seed]:
                done = subprocess.run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "OMP_NUM_THREADS": threads},
                )
                if done.returncode:
                    break
        seconds = time.time() - started
        print(f"seed {seed}: {'FAILED' if done.returncode else 'done'} in {seconds:.0f} s", flush=True)
        return seconds, done.returncode

    order = "side by side" if side_by_side else "one after another"
    print(f"seeds {list(commands)} {order}; logs in {out}/seed-<N>.log", flush=True)
    with ThreadPoolExecutor(max_workers=len(commands) if side_by_side else 1) as pool:
        results = dict(zip(commands, pool.map(run, commands)))
    failed = [seed for seed, (_, code) in results.items() if code]
    if failed:
        raise SystemExit(
            f"seeds {failed} failed: see {', '.join(str(out / f'seed-{s}.log') for s in failed)}"
        )
    return {seed: seconds for seed, (seconds, _) in results.items()}
