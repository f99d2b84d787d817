"""Hostile programs against rewards.sandbox.

For each: the outcome is what a reward must see (a failure, or the harmless correct output), the run
ends within its wall-clock limit, nothing it started is left running, and the trainer's process, files
and secrets are untouched.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewards.sandbox import Limits, isolation, run_python

LIMITS = Limits(wall_seconds=3.0, cpu_seconds=2, memory_bytes=256 << 20, output_bytes=64 << 10, processes=16)
# Beyond the wall-clock limit: a guard against a sandbox that never ends a run, not a measurement of how
# fast it ends one (that is BENCHMARKS.md's); generous enough for a machine under any load.
SLACK = 30.0
SECRET = "hf_reasonkit_test_secret_token"

needs_namespaces = pytest.mark.skipif(isolation() != "namespaces", reason="needs network/PID namespaces")


def sandbox_processes() -> list[str]:
    """Processes owned by sandbox uids (200000-299999) anywhere on the machine."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(
                next(line for line in status.read_text().splitlines() if line.startswith("Uid:")).split()[1]
            )
        except (OSError, StopIteration, ValueError):
            continue
        if 200_000 <= uid < 300_000:
            found.append(status.parent.name)
    return found


@pytest.fixture
def trainer(tmp_path, monkeypatch):
    """What the sandbox must leave alone: files, a secret in the environment, a helper process, a server."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    precious = tmp_path / "checkpoint.bin"
    precious.write_bytes(b"weights")
    precious.chmod(0o644)
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield {
        "dir": tmp_path,
        "file": precious,
        "helper": helper,
        "port": server.getsockname()[1],
        "server": server,
    }
    helper.kill()
    server.close()


def accepted_connection(server) -> bool:
    try:
        server.accept()[0].close()
        return True
    except BlockingIOError:
        return False


# (name, program, what the result must show). {file}, {dir}, {port}, {ppid} are filled in per test.
HOSTILE = [
    ("fork_bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", "not_ok"),
    (
        "fork_bomb_subprocess",
        "import subprocess, sys\nwhile True:\n    try: subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(99)'])\n    except OSError: pass",
        "not_ok",
    ),
    (
        "thread_bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(99,)).start()",
        "not_ok",
    ),
    ("memory_bomb", "x = []\nwhile True:\n    x.append(bytearray(50 << 20))", "not_ok"),
    ("one_huge_allocation", "x = bytearray(8 << 30)\nprint('allocated')", "not_ok"),
    ("infinite_loop", "while True:\n    pass", "not_ok"),
    (
        "ignores_cpu_signal",
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass",
        "not_ok",
    ),
    ("sleep", "import time\ntime.sleep(100)\nprint('woke')", "timed_out"),
    (
        "ignores_termination",
        "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\ntime.sleep(100)",
        "timed_out",
    ),
    ("gigabytes_of_output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", "capped"),
    ("gigabytes_on_stderr", "import sys\nwhile True:\n    sys.stderr.write('y' * 65536)", "not_ok"),
    ("huge_file", "open('big', 'wb').write(b'0' * (1 << 30))", "not_ok"),
    (
        "many_files_fill_disk",
        "i = 0\nwhile True:\n    open(f'f{{i}}', 'wb').write(b'0' * 60000)\n    i += 1",
        "not_ok",
    ),
    ("write_outside_its_dir", "open('{dir}/planted.txt', 'w').write('pwned')", "not_ok"),
    ("overwrite_trainer_file", "open('{file}', 'wb').write(b'pwned')", "not_ok"),
    ("delete_trainer_files", "import os, shutil\nos.remove('{file}')", "not_ok"),
    ("rmtree_trainer_dir", "import shutil\nshutil.rmtree('{dir}')", "not_ok"),
    ("read_environment_secret", "import os\nprint(dict(os.environ))", "no_secret"),
    (
        "read_trainer_environ_via_proc",
        "import os\nfor p in os.listdir('/proc'):\n    try: print(open(f'/proc/{{p}}/environ').read())\n    except Exception: pass",
        "no_secret",
    ),
    ("read_trainer_cmdline_via_proc", "print(open('/proc/{ppid}/environ').read())", "not_ok"),
    (
        "open_a_socket",
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')",
        "not_ok",
    ),
    (
        "dns_and_outside_network",
        "import socket\nsocket.create_connection(('pypi.org', 443), timeout=1)\nprint('connected')",
        "not_ok",
    ),
    (
        "kill_its_parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill({ppid}, signal.SIGKILL)\nprint('killed')",
        "not_ok",
    ),
    (
        "kill_everything",
        "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass\nprint('alive')",
        "ok_or_killed",
    ),
    ("os_exit_without_output", "import os\nos._exit(0)", "empty"),
    (
        "daemon_outlives_it",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\nprint('parent done')",
        "ok",
    ),
    (
        "background_subprocess",
        "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\nprint('started')",
        "ok",
    ),
    ("become_root", "import os\nos.setuid(0)\nprint('root')", "not_ok"),
    ("read_shadow", "print(open('/etc/shadow').read())", "not_ok"),
    ("open_many_files", "fs = [open('/dev/null') for _ in range(100000)]\nprint(len(fs))", "not_ok"),
    ("deep_recursion", "import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)", "not_ok"),
]


@needs_namespaces
@pytest.mark.parametrize("name, program, expect", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_program(trainer, name, program, expect):
    code = program.format(dir=trainer["dir"], file=trainer["file"], port=trainer["port"], ppid=os.getpid())
    started = time.monotonic()
    result = run_python(code, limits=LIMITS)
    elapsed = time.monotonic() - started

    assert elapsed < LIMITS.wall_seconds + SLACK, f"{name} ran {elapsed:.1f}s"
    if expect == "not_ok":
        assert not result.ok, result
    elif expect == "timed_out":
        assert result.timed_out and result.exit_code is None
    elif expect == "capped":
        assert len(result.stdout) <= LIMITS.output_bytes and not result.ok
    elif expect == "no_secret":
        assert SECRET not in result.stdout + result.stderr
    elif expect == "empty":
        assert result.exit_code == 0 and result.stdout == ""
    elif expect == "ok":
        assert result.ok, result
    assert SECRET not in result.stdout + result.stderr

    deadline = time.monotonic() + 2
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sandbox_processes(), f"{name} left processes running"
    assert trainer["file"].read_bytes() == b"weights" and oct(trainer["file"].stat().st_mode)[-3:] == "644"
    assert not (trainer["dir"] / "planted.txt").exists()
    assert trainer["helper"].poll() is None  # the trainer's other processes live on
    assert not accepted_connection(trainer["server"])


def test_ordinary_program_reads_stdin_and_writes_stdout():
    result = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3\n")
    assert result.ok and result.stdout == "6\n" and not result.timed_out


def test_runs_do_not_see_each_others_files():
    run_python("open('left_behind.txt', 'w').write('x')\nopen('/tmp/shared.txt', 'w').write('x')")
    result = run_python("import os\nprint(sorted(os.listdir('.')), os.path.exists('/tmp/shared.txt'))")
    assert result.stdout.strip() == "['main.py'] False"


KILL_EVERYTHING = next(program for name, program, _ in HOSTILE if name == "kill_everything")


def test_one_server_serves_every_run_and_a_killed_one_is_replaced():
    from rewards import sandbox

    run_python("print(1)")
    server = sandbox._server()
    for _ in range(3):
        assert run_python(KILL_EVERYTHING).stdout == "alive\n"
    assert sandbox._server() is server and server.alive()

    os.killpg(server.process.pid, 9)  # the OOM killer, say
    server.process.wait()
    result = run_python("print(input())", stdin="still here\n")
    assert result.ok and result.stdout == "still here\n"
    assert sandbox._server() is not server


def test_fallback_without_namespaces_keeps_limits_time_and_separate_directories(monkeypatch):
    from rewards import sandbox

    monkeypatch.setattr(sandbox, "_namespace_prefix", lambda: ())
    monkeypatch.setattr(sandbox, "_servers", {})
    try:
        assert sandbox.isolation() == "fallback"
        run_python("open('left_behind.txt', 'w').write('x')")
        assert run_python("import os\nprint(sorted(os.listdir('.')))").stdout == "['main.py']\n"
        slept = run_python("import time\ntime.sleep(60)", limits=Limits(wall_seconds=1.0))
        assert slept.timed_out and slept.exit_code is None
        assert not run_python("x = bytearray(2 << 30)", limits=LIMITS).ok
        assert run_python("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"
    finally:
        sandbox._close_server()


@pytest.mark.parametrize(
    "program, exit_code, stdout",
    [
        ("import sys\nsys.stdout.write('no newline')", 0, "no newline"),
        ("print('before')\nraise ValueError('boom')", 1, "before\n"),
        ("import sys\nprint('x')\nsys.exit(3)", 3, "x\n"),
        ("import sys\nsys.exit('a message')", 1, ""),
        ("import atexit\natexit.register(print, 'at exit')\nprint('main')", 0, "main\nat exit\n"),
        (
            "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')",
            0,
            "main\nthread\n",
        ),
    ],
    ids=["unflushed", "raises", "sys_exit", "exit_message", "atexit", "thread_joined"],
)
def test_a_program_ends_as_python_would(program, exit_code, stdout):
    result = run_python(program)
    assert (result.exit_code, result.stdout) == (exit_code, stdout), result
    if exit_code == 1:
        assert result.stderr.strip().endswith(("ValueError: boom", "a message"))


AS_UNPRIVILEGED_USER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from rewards.sandbox import isolation, run_python, _server

server = _server()
attacks = {
    "kill_everything": "import os, signal\\ntry: os.kill(-1, signal.SIGKILL)\\nexcept OSError: pass\\nprint('alive')",
    "kill_its_group": "import os, signal\\nos.kill(0, signal.SIGKILL)",
    "uncover_tmp_and_write": "import ctypes\\nprint(ctypes.CDLL(None).umount2(b'/tmp', 2), flush=True)\\n"
    f"open('{sys.argv[2]}/planted.txt', 'w').write('x')",
}
results = {name: run_python(code).__dict__ for name, code in attacks.items()}
results["after"] = run_python("print(input())", stdin="fine").__dict__
print(json.dumps({"isolation": isolation(), "same_server": _server() is server, "results": results}))
"""


def test_without_root_the_program_cannot_reach_the_server(tmp_path):
    """Most users train as an ordinary user: the sandbox then has no uid of its own to give the program.
    It runs as root of a user namespace of its own, with no capability over the server's namespaces: it
    cannot unmount the tmpfs over /tmp to reach the trainer's files there, nor signal the server."""
    import json
    import shutil
    import tempfile

    system_python = "/usr/bin/python3"
    readable = all(os.stat(p).st_mode & 0o005 == 0o005 for p in [*Path(__file__).resolve().parents][:-1])
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(system_python) or not readable:
        pytest.skip(
            "needs root (to become an unprivileged user), setpriv, /usr/bin/python3, a world-readable checkout"
        )
    root = str(Path(__file__).resolve().parents[2])
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # writable by the unprivileged user: only the tmpfs hides it
    shared.chmod(0o777)
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system_python, "-c", AS_UNPRIVILEGED_USER, root, str(shared)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    if report["isolation"] != "namespaces":
        pytest.skip("no unprivileged user namespaces here")
    results = report["results"]
    assert report["same_server"], "a program killed the server"
    assert results["kill_everything"]["stdout"] == "alive\n"
    assert results["kill_its_group"]["exit_code"] in (0, -9)  # PID 1 of its namespace may ignore it
    planted = (shared / "planted.txt").exists()
    shutil.rmtree(shared)
    assert results["uncover_tmp_and_write"]["stdout"] == "-1\n" and not planted
    assert results["after"]["stdout"] == "fine\n"


def test_a_sandbox_that_cannot_run_here_says_why(tmp_path, monkeypatch):
    from rewards import sandbox

    broken = tmp_path / "server.py"
    broken.write_text("import sys\nsys.exit('mount tmpfs on /tmp: Operation not permitted')\n")
    broken.chmod(0o644)
    monkeypatch.setattr(sandbox, "SERVER", broken)
    monkeypatch.setattr(sandbox, "_servers", {})
    with pytest.raises(sandbox.SandboxServerError, match="mount tmpfs on /tmp: Operation not permitted"):
        run_python("print(1)")
