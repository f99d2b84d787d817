"""Run untrusted Python (model output) in a throw-away sandbox process.

Each run is a process of its own, forked by a server that this process starts once inside new
namespaces through ``unshare`` (``_sandbox_server.py``; a namespace and an interpreter cost more than
most programs under test take to run, so they are paid once). Each run gets:

- **no network**: the server's network namespace holds only a loopback interface that is down;
- **its own process table**: a new PID namespace with its own ``/proc``; the program is PID 1 there, so
  when it exits or is killed the kernel kills everything it started, daemons that called ``setsid``
  included, and it cannot see or signal any process outside;
- **its own user** when the trainer runs as root: a uid no other process has, so it cannot touch the
  trainer's files (only world-writable ones) nor signal its processes, and the process-count limit is
  counted for it alone; without root, a user namespace of its own, which leaves it no capability over
  the server (it cannot trace it or read its memory);
- **its own files**: private, size-capped tmpfs over its working directory and the shared temp dirs;
- **limits** (``setrlimit``): CPU seconds, address space (memory), size of any file written (stdout
  included, which goes to a file: output is capped by the kernel, never buffered whole in the trainer),
  number of processes, open files, no core dumps;
- **a hard wall-clock kill** of the whole namespace after ``wall_seconds``, whatever the program does
  with signals or sleeps;
- **an empty environment**: nothing inherited (no tokens, no keys); ``HOME`` is the working directory.

Where ``unshare`` cannot create namespaces (not root and no unprivileged user namespaces), runs fall
back to a new session with the same limits, a fresh directory and a process-group kill: then the
program **can** reach the network and see other processes (and kill the server, which is then
restarted), and a daemon that leaves the session can outlive the run. The fallback is logged once;
``isolation()`` says which mode is in use.

Not protected against: kernel exploits and side channels; reading world-readable files (the
filesystem is not hidden, only unwritable); use of CPU and memory up to the limits.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER = Path(__file__).with_name("_sandbox_server.py")
SERVER_GRACE_SECONDS = 10.0  # beyond a run's wall clock before the server counts as hung
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
    try:
        return _server().run(code, stdin, limits)
    except SandboxServerError:  # killed from outside (the OOM killer, a signal): one fresh start
        return _server().run(code, stdin, limits)


class SandboxServerError(RuntimeError):
    pass


class _Server:
    """This process's fork server (``_sandbox_server.py``), started inside the namespaces once: each run
    costs a fork there instead of new namespaces and a new interpreter (about 5x less for a short
    program). It ends when this process closes its socket or ends."""

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="reasonkit-sandbox-"))
        workdir = self.home / "run"  # covered by a private tmpfs in each run; in the fallback, holds the runs
        workdir.mkdir()
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prefix = _namespace_prefix()
        settings = {"socket": theirs.fileno(), "namespaces": bool(prefix), "workdir": str(workdir)}
        self.errors = tempfile.TemporaryFile(dir=self.home)
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [*prefix, _interpreter(), "-I", "-S", str(SERVER), json.dumps(settings)],
            cwd=workdir,
            env={
                "PATH": SAFE_PATH,
                "LANG": "C.UTF-8",
                "HOME": str(workdir),
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
            pass_fds=[theirs.fileno()],
            start_new_session=True,
        )
        theirs.close()
        # A sandbox that cannot run anything here (a mount or a namespace refused) would fail every
        # program, and a reward would read that as wrong code: say so once, with the server's words.
        check = self.run("print('ok')", "", Limits())
        if check.stdout != "ok\n":
            problem = f"the sandbox cannot run a program here: {check.stderr.strip()}; {self.error_text()}"
            self.close()
            raise SandboxServerError(problem)

    def run(self, code: str, stdin: str, limits: Limits) -> Result:
        request = json.dumps({"limits": limits.__dict__, "uid": _sandbox_uid()}).encode()
        started = time.monotonic()
        # The program's output goes to files opened here and is read back through these descriptors, so
        # it can neither make the trainer buffer gigabytes nor swap a file for a link to another one.
        with self.lock, ExitStack() as files:
            code_file, stdin_file, out, err = (
                files.enter_context(tempfile.TemporaryFile()) for _ in range(4)
            )
            for file, text in ((code_file, code), (stdin_file, stdin)):
                file.write(text.encode())
                file.seek(0)
            try:
                socket.send_fds(
                    self.channel, [request], [f.fileno() for f in (code_file, stdin_file, out, err)]
                )
                self.channel.settimeout(limits.wall_seconds + SERVER_GRACE_SECONDS)
                answer = self.channel.recv(1 << 16)
                if not answer:
                    raise OSError("the socket closed")
            except OSError as e:
                problem = f"the sandbox server stopped answering ({e}): {self.error_text()}"
                self.close()
                raise SandboxServerError(problem) from e
            answer = json.loads(answer)
            return Result(
                stdout=_read_capped(out, limits.output_bytes),
                stderr=answer.get("error") or _read_capped(err, limits.output_bytes),
                exit_code=answer["exit_code"],
                timed_out=answer["timed_out"],
                wall_seconds=time.monotonic() - started,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def error_text(self) -> str:
        return _read_capped(self.errors, 4000).strip() or "it wrote nothing on stderr"

    def close(self) -> None:
        self.channel.close()
        if self.process.poll() is None:  # not yet reaped, so its process group id is still its own
            os.killpg(self.process.pid, signal.SIGKILL)  # unshare, and with it the server's namespace
            self.process.wait()
        self.errors.close()
        shutil.rmtree(self.home, ignore_errors=True)


_servers: dict[int, _Server] = {}  # by process id: a forked child starts its own


def _server() -> _Server:
    server = _servers.get(os.getpid())
    if server is not None and not server.alive():
        server.close()
        server = None
    if server is None:
        server = _servers[os.getpid()] = _Server()
    return server


@atexit.register
def _close_server() -> None:
    server = _servers.pop(os.getpid(), None)
    if server is not None:
        server.close()


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


def _interpreter() -> str:
    if os.geteuid() != 0:
        return sys.executable
    return next((p for p in INTERPRETERS if os.path.exists(p)), sys.executable)


def _sandbox_uid() -> int | None:
    """A uid of its own for this run when we may switch users (root), else None."""
    if os.geteuid() != 0:
        return None
    return 200_000 + (os.getpid() * 7919 + time.monotonic_ns()) % 100_000


def _read_capped(file, cap: int) -> str:
    file.seek(0)
    return file.read(cap).decode("utf-8", errors="replace")
