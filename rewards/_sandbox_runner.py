"""Inside the sandbox's namespaces: private filesystems, limits, the sandbox user, then the program.

Run by rewards.sandbox as ``python -I -S _sandbox_runner.py SETTINGS_JSON``; never imported.
The program then runs in this same process, PID 1 of the new PID namespace, so the kernel kills every
process it started as soon as it ends.
"""

import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(path: str, size: int) -> None:
    """A private, size-capped tmpfs over ``path`` (only this mount namespace sees it)."""
    options = f"size={size},mode=1777".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, options) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {path}")


def main() -> None:
    settings = json.loads(sys.argv[1])
    limits, uid, workdir = settings["limits"], settings["uid"], settings["workdir"]
    code = open(os.path.join(workdir, "main.py"), "rb").read()
    if settings["namespaces"]:
        # The program's directory and the shared temp dirs become small private tmpfs: nothing it writes
        # reaches the trainer's disk, and writing many files cannot fill it. Enter the directory first:
        # a working directory stays usable after the path leading to it is covered.
        disk = 4 * limits["output_bytes"] + len(code)
        mount_tmpfs(workdir, disk)
        os.chdir(workdir)
        for shared in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(shared):
                mount_tmpfs(shared, disk)
    else:
        os.chdir(workdir)
    with open("main.py", "wb") as f:
        f.write(code)
    if uid is not None:
        os.chown(".", uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change; unshare's kill relies on it
    for name, value in [
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["output_bytes"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(name, (value, value))
    # The program runs in this interpreter (started isolated and without site, -I -S), in a namespace of
    # its own, as __main__: a second interpreter would double the cost of a short program's run.
    sys.argv = ["main.py"]
    program = compile(code, "main.py", "exec")
    exec(program, {"__name__": "__main__", "__builtins__": __builtins__})


main()
