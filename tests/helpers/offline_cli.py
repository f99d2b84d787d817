"""`reasonkit` commands in one process without a network, each with its output and network attempts caught.

    unshare -rn python -m tests.helpers.offline_cli '[["run", "R", "--dry-run"], ["eval", ...]]'

prints one JSON list: per command, its exit code, what it wrote to the stdout and stderr file
descriptors (so library handlers and C code are caught too, not only Python's sys.stdout), and the
network attempts it made: every ``socket.getaddrinfo`` and every ``socket.connect`` to an internet
address, seen by an audit hook (the way to see calls a library makes on its own threads as well).
Commands run in order in one process, as one process per command would, except that the hub access a
first command decided holds for the later ones. ``run_offline`` starts it from a test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Hub and proxy settings of the machine running the tests, which would change what is being tested.
MACHINE_SETTINGS = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "HF_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)

attempts: list[str] = []


def _record(event: str, args) -> None:
    if event == "socket.getaddrinfo":
        attempts.append(f"getaddrinfo {args[0]}:{args[1]}")
    elif event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(f"connect {args[1]}")


def _caught(command, argv: list[str]) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        attempts.clear()
        try:
            rc = command(argv)
        except SystemExit as exc:
            rc = exc.code
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        out.seek(0), err.seek(0)
        return {
            "rc": rc,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
            "network": list(attempts),
        }


def run_offline(commands: list[list[str]], hf_home: Path, **env) -> list[dict]:
    """Run ``commands`` in a new process with no network (its own network namespace), the hub cache
    at ``hf_home``; skips the test where namespaces are refused."""
    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("no `unshare` here to run a process without a network")
    refused = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if refused.returncode != 0:
        pytest.skip(f"network namespaces are refused here (unshare -rn: {refused.stderr.strip()})")
    environment = {k: v for k, v in os.environ.items() if k.upper() not in MACHINE_SETTINGS}
    environment.update(HF_HOME=str(hf_home), PYTHONPATH=str(ROOT), **env)
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "tests.helpers.offline_cli", json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


if __name__ == "__main__":
    sys.addaudithook(_record)
    from reasonkit.cli import main

    results = [_caught(main, argv) for argv in json.loads(sys.argv[1])]
    print(json.dumps(results))
