"""Run untrusted Python (model output) in a throw-away sandbox process.

Each run gets a fresh working directory and a separate process started through ``unshare``:

- **no network**: a new network namespace holding only a loopback interface that is down;
- **its own process table**: a new PID namespace with its own ``/proc``; the program is PID 1 there, so
  when it exits or is killed the kernel kills everything it started, daemons that called ``setsid``
  included, and it cannot see or signal any process outside;
- **its own user** when the trainer runs as root: a uid no other process has, so it cannot touch the
  trainer's files (only world-writable ones) nor signal its processes, and the process-count limit is
  counted for it alone;
- **limits** (``setrlimit``): CPU seconds, address space (memory), size of any file written (stdout
  included, which goes to a file: output is capped by the kernel, never buffered whole in the trainer),
  number of processes, open files, no core dumps;
- **a hard wall-clock kill** of the whole namespace after ``wall_seconds``, whatever the program does
  with signals or sleeps;
- **an empty environment**: nothing inherited (no tokens, no keys); ``HOME`` is the working directory.

Where ``unshare`` cannot create namespaces (not root and no unprivileged user namespaces), runs fall
back to a new session with the same limits and a process-group kill: then the program **can** reach
the network and see other processes, and a daemon that leaves the session can outlive the run. The
fallback is logged once; ``isolation()`` says which mode is in use.

Not protected against: kernel exploits and side channels; reading world-readable files (the
filesystem is not hidden, only unwritable); use of CPU and memory up to the limits.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("_sandbox_runner.py")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# The program runs as another user, who may not reach the trainer's interpreter (a venv under /root):
# the system's Python comes first.
INTERPRETERS = ("/usr/bin/python3", "/usr/local/bin/python3")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 5.0  # hard kill of everything the program started
    cpu_seconds: int = 5
    memory_bytes: int = 512 << 20  # address space
    output_bytes: int = 1 << 20  # stdout and stderr each; also caps any file the program writes
    processes: int = 16  # processes and threads the sandbox user may have at once
    open_files: int = 64


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int | None  # None when killed at the wall-clock limit
    timed_out: bool
    wall_seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_python(code: str, stdin: str = "", limits: Limits = Limits()) -> Result:
    """Run ``code`` with ``stdin``; returns its (capped) output, exit code and whether it timed out."""
    workdir = Path(tempfile.mkdtemp(prefix="reasonkit-sandbox-"))
    try:
        return _run_in(workdir, code, stdin, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, code: str, stdin: str, limits: Limits) -> Result:
    program_dir = workdir / "run"  # the program's own directory; its output files stay outside it
    program_dir.mkdir()
    (program_dir / "main.py").write_text(code)
    uid = _sandbox_uid()
    if uid is not None:
        os.chown(program_dir, uid, uid)
    prefix = _namespace_prefix()
    settings = {
        "limits": limits.__dict__,
        "uid": uid,
        "workdir": str(program_dir),
        "namespaces": bool(prefix),
    }
    command = [*prefix, _interpreter(uid), "-I", "-S", str(RUNNER), json.dumps(settings)]
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(program_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    # Output goes to files the trainer opened, and is read back through these same descriptors, so the
    # program can neither make the trainer buffer gigabytes nor swap a file for a link to another one.
    with (
        tempfile.TemporaryFile(dir=workdir) as stdin_file,
        tempfile.TemporaryFile(dir=workdir) as out,
        tempfile.TemporaryFile(dir=workdir) as err,
    ):
        stdin_file.write(stdin.encode())
        stdin_file.seek(0)
        process = subprocess.Popen(
            command,
            cwd=program_dir,
            env=env,
            stdin=stdin_file,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        exit_code = _wait(process, limits.wall_seconds)
        timed_out = exit_code is None
        _kill_everything(process)
        return Result(
            stdout=_read_capped(out, limits.output_bytes),
            stderr=_read_capped(err, limits.output_bytes),
            exit_code=exit_code,
            timed_out=timed_out,
            wall_seconds=time.monotonic() - started,
        )


def isolation() -> str:
    """``namespaces`` (network, PID and mount namespaces) or ``fallback`` (limits and a session only)."""
    return "namespaces" if _namespace_prefix() else "fallback"


@functools.cache
def _namespace_prefix() -> tuple[str, ...]:
    base = ("unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc")
    for prefix in (base, ("unshare", "--map-root-user", *base[1:])):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            break
    log.warning(
        "rewards.sandbox: cannot create namespaces here; sandboxed code can reach the network "
        "(fallback mode: limits and a process-group kill only)"
    )
    return ()


def _interpreter(uid: int | None) -> str:
    if uid is None:
        return sys.executable
    return next((p for p in INTERPRETERS if os.path.exists(p)), sys.executable)


def _sandbox_uid() -> int | None:
    """A uid of its own for this run when we may switch users (root), else None."""
    if os.geteuid() != 0:
        return None
    return 200_000 + (os.getpid() * 7919 + time.monotonic_ns()) % 100_000


def _wait(process: subprocess.Popen, seconds: float) -> int | None:
    """The exit code, or None if the process still runs after ``seconds``. Woken by the kernel the moment
    it exits (a pidfd): ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms, which was most of the
    cost of a short program's run."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # before Linux 5.3 / Python 3.9
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return process.wait() if poller.poll(seconds * 1000) else None
    finally:
        os.close(pidfd)


def _kill_everything(process: subprocess.Popen) -> None:
    """Kill the namespace's PID 1 (the kernel then kills all of its processes), then the session."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _read_capped(file, cap: int) -> str:
    file.seek(0)
    return file.read(cap).decode("utf-8", errors="replace")
