"""A real vLLM server for the tests: ``reasonkit vllm-serve`` in a process group of its own, on a free
loopback port, killed (the whole group) when the test is done."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, model_dir, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        command = [sys.executable, "-m", "reasonkit", "vllm-serve", str(model_dir)]
        command += [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--kv-cache-memory-bytes",
            str(256 << 20),
        ]
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_up(self, seconds: float = 400) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(1)
        raise RuntimeError(f"the vLLM server did not come up in {seconds} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:]

    def kill(self) -> None:
        """The server and every process it started (vLLM's engine core and workers)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@contextlib.contextmanager
def running_server(model_dir, log_path: Path):
    server = ServerProcess(model_dir, log_path)
    try:
        server.wait_up()
        yield server
    finally:
        server.kill()
