"""The sandbox's fork server: one isolated interpreter per trainer process, a forked child per program.

Started by rewards.sandbox as ``python -I -S _sandbox_server.py SETTINGS_JSON`` inside the sandbox's
network namespace (PID 1 of its own PID namespace); never imported. Starting a namespace and an
interpreter cost more than most programs under test take to run, so both are paid once here.

For each request (its program, stdin and output files arrive as descriptors on the socket):
- a **supervisor** is forked: a mount and a PID namespace of its own, private size-capped tmpfs over the
  working directory and the shared temp dirs, then it forks the program and enforces the wall clock;
- the **program** is PID 1 of that PID namespace, so the kernel kills everything it started when it
  ends; it drops to the sandbox user (or, without root, into a user namespace of its own, which leaves
  it no capability over this server), takes the limits, and runs the code in this same interpreter.
The supervisor answers the request and exits; the server itself never runs untrusted code.
"""

import atexit
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), what)


def mount(source: str, path: str, kind: str, flags: int = 0, options: str = "") -> None:
    check(libc.mount(source.encode(), path.encode(), kind.encode(), flags, options.encode()), f"mount {path}")


def mount_tmpfs(path: str, size: int) -> None:
    """A private, size-capped tmpfs over ``path`` (only this mount namespace sees it)."""
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")


def die_with_parent() -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def serve(channel: socket.socket, settings: dict):
    """Answer requests until the trainer closes the socket; returns only in a program's process."""
    # Nothing that runs in a child may read or trace this process (its memory holds the socket).
    libc.prctl(PR_SET_DUMPABLE, 0)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 4)
        except OSError:
            message = b""
        if not message:  # the trainer closed the socket or ended
            shutil.rmtree(os.path.dirname(settings["workdir"]), ignore_errors=True)
            os._exit(0)
        supervisor = os.fork()
        if supervisor == 0:
            return supervise(channel, settings, json.loads(message), fds)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(supervisor, 0)
        if status != 0:  # it died before answering: killed (the fallback cannot stop a program doing so)
            reason = f"the sandbox's supervisor ended with exit code {os.waitstatus_to_exitcode(status)}"
            channel.send(json.dumps({"exit_code": None, "timed_out": False, "error": reason}).encode())


def supervise(channel: socket.socket, settings: dict, request: dict, fds: list[int]):
    """One program's run: its namespaces and filesystems, then the wall clock; returns only in the program."""
    die_with_parent()
    code_fd, *stdio = fds
    with os.fdopen(code_fd, "rb") as f:
        code = f.read()
    limits, uid = request["limits"], request["uid"]
    if settings["namespaces"]:
        check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        # Nothing the program writes reaches the trainer's disk, and writing many files cannot fill it.
        # Enter the working directory before /tmp, which holds it, is covered: the program then runs
        # there, and nothing else of the trainer's temp dir is reachable from it.
        workdir, size = settings["workdir"], 4 * limits["output_bytes"] + len(code)
        mount_tmpfs(workdir, size)
        os.chdir(workdir)
        for path in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(path):
                mount_tmpfs(path, size)
    else:
        workdir = tempfile.mkdtemp(dir=settings["workdir"])
        os.chdir(workdir)
    with open("main.py", "wb") as f:
        f.write(code)
    if uid is not None:
        os.chown(".", uid, uid)
    program = os.fork()
    if program == 0:
        return become_program(channel, settings, limits, uid, stdio, code)
    exit_code = wait(program, limits["wall_seconds"])
    if exit_code is None:
        os.kill(program, signal.SIGKILL)
        os.waitpid(program, 0)
    if not settings["namespaces"]:  # no PID namespace to end it all: the session's process group
        try:
            os.killpg(program, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(workdir, ignore_errors=True)
    channel.send(json.dumps({"exit_code": exit_code, "timed_out": exit_code is None}).encode())
    os._exit(0)


def wait(pid: int, seconds: float) -> int | None:
    """The exit code (negative: killed by that signal), or None if it still runs after ``seconds``."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(seconds * 1000):
            return None
    finally:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def become_program(channel, settings, limits, uid, stdio, code):
    """In the program's process: its own session, /proc, user and limits; returns the compiled program."""
    os.setsid()  # kill(0, ...) then reaches only its own process group
    if settings["namespaces"]:  # a /proc that shows only this PID namespace
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif settings["namespaces"]:
        check(libc.unshare(CLONE_NEWUSER), "unshare user namespace")
    die_with_parent()  # after the uid change, which clears it
    for name, value in [
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["output_bytes"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(name, (value, value))
    # The server's stdin, stdout and stderr objects hold no buffered data: pointing their descriptors
    # at this run's files is all they need. Every other descriptor (the socket) is closed.
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    channel.detach()
    os.closerange(3, 1 << 16)
    sys.argv = ["main.py"]
    return compile(code, "main.py", "exec")


def main():
    settings = json.loads(sys.argv[1])
    channel = socket.socket(fileno=settings["socket"])
    return serve(channel, settings)


def run_program(program) -> None:
    """Run the program as ``__main__`` and exit as Python would (a traceback and exit code 1 on an
    uncaught exception, ``sys.exit``'s code, threads joined, atexit functions run, output flushed, 120
    if that fails), then leave without the interpreter's teardown: it cost 6 ms, more than most
    programs under test take to run."""
    try:
        exec(program, {"__name__": "__main__", "__builtins__": __builtins__})
        code = 0
    except SystemExit as e:
        code = exit_code_of(e.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = 120
    os._exit(code)


def exit_code_of(value) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


run_program(main())  # only a program's process gets here
