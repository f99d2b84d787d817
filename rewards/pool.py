"""Call reward functions in worker processes, one completion per call, each call with a time limit.

A reward is user code running on model output: it may hang (a regex that backtracks forever, sympy
on a pathological expression), crash its process, or raise. Here each of those costs at most one
call's time limit and turns into a ``Failure`` naming the reward and the sample, and the batch goes on
with ``None`` for that sample. The workers run rewards in their main thread, so rewards that time
themselves out with SIGALRM (math-verify) work; several workers score in parallel.

A hung or crashed worker is killed with its whole process group and replaced. A reward that times out
``BREAKER`` times in a row within one batch is given up for the rest of that batch (its remaining
samples are failures too), so a reward that always hangs costs a few time limits, not one per sample.

Each call follows ``rewards.convention`` (the shape of prompts and completions, ``trainer_state``,
``log_metric``, ``log_extra``); what the rewards log is in ``RewardPool.logs`` after each batch.

A reward that reads ``environments`` (TRL's ``environment_factory`` instances) runs in this process,
where the instances are (they need not pickle, and their state is the rollout's): each call in a thread
of its own under the same time limit. A thread that hangs cannot be killed; it is left behind, its call
a failure, and the breaker counts it like a worker's time-out.

``workers=0`` calls the rewards in this process instead: no time limit, for debugging.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from rewards.convention import RewardLog, TrainerState, call_reward, describe_error, takes_environments

STARTUP_SECONDS = 60
BREAKER = 4  # time-outs in a row after which a reward is given up for the rest of the batch


@dataclass(frozen=True)
class RewardCall:
    """Which reward to call: a registry name or spec, the ``args`` its recipe entry gives (bound to it, or
    passed to its factory), and the shape it reads completions in (``rewards.convention.SHAPES``)."""

    spec: str
    args: dict = field(default_factory=dict)
    completions: str = "auto"

    def resolve(self):
        from rewards.registry import build

        return build(self.spec, self.args)


@dataclass(frozen=True)
class Failure:
    reward: str
    sample: int
    reason: str  # "timed out after 10 s", "raised ValueError: ...", "worker process died (exit code -9)"

    def describe(self, prompts, completions) -> str:
        return (
            f"reward {self.reward!r} {self.reason} on sample {self.sample} "
            f"(prompt {str(prompts[self.sample])[:200]!r}, completion {completions[self.sample][:200]!r})"
        )


@dataclass
class BatchLogs:
    """What the rewards logged while scoring one batch, by reward name.

    ``metrics[reward][name]``: every value ``log_metric`` got (one call per completion, so a reward that
    logs its batch's mean logs one value per completion); ``extra[reward][column]``: one value per
    completion of the batch (None where the reward logged none for it).
    """

    size: int = 0
    metrics: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(dict))
    extra: dict[str, dict[str, list]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, reward: str, sample: int, logged: tuple[dict, dict]) -> None:
        metrics, extra = logged
        for name, values in metrics.items():
            self.metrics[reward].setdefault(name, []).extend(values)
        for column, values in extra.items():
            slot = self.extra[reward].setdefault(column, [None] * self.size)
            slot[sample] = values[0] if len(values) == 1 else values

    def gathered(self, gather) -> BatchLogs:
        """The logs of every process, batch order kept. ``gather(list) -> list`` concatenates over
        processes and must be called the same number of times on each: the keys are gathered first."""
        total = BatchLogs(size=len(gather([None] * self.size)))
        for reward, name in sorted(set(gather(sorted((r, n) for r, m in self.metrics.items() for n in m)))):
            total.metrics[reward][name] = gather(self.metrics.get(reward, {}).get(name, []))
        for reward, column in sorted(set(gather(sorted((r, c) for r, e in self.extra.items() for c in e)))):
            total.extra[reward][column] = gather(self.extra.get(reward, {}).get(column, [None] * self.size))
        return total

    def metric_means(self) -> dict[str, float]:
        """``reward/<reward>/<name>``: the mean of what ``log_metric`` got this batch."""
        return {
            f"reward/{reward}/{name}": sum(values) / len(values)
            for reward, by_name in self.metrics.items()
            for name, values in by_name.items()
            if values
        }

    def extra_columns(self) -> dict[str, list]:
        """``<reward>/<column>``: what ``log_extra`` got, one value per completion."""
        return {
            f"{reward}/{column}": values
            for reward, by_column in self.extra.items()
            for column, values in by_column.items()
        }


class UnusableValue(TypeError):
    """A reward returned something other than one float or None for the completion."""


def call_one(
    fn,
    prompt,
    completion: str,
    columns: dict,
    sample_index: int = 0,
    shape: str = "auto",
    trainer_state: TrainerState | None = None,
    log: RewardLog | None = None,
) -> float | None:
    """Call a TRL-convention reward on one completion and check what it returns."""
    values = call_reward(
        fn,
        [prompt],
        [completion],
        {k: [v[sample_index]] for k, v in columns.items()},
        shape=shape,
        trainer_state=trainer_state,
        log=log,
    )
    if not isinstance(values, (list, tuple)) or len(values) != 1:
        raise UnusableValue(
            f"returned {type(values).__name__} of length "
            f"{len(values) if hasattr(values, '__len__') else '?'}; expected one value per completion"
        )
    value = values[0]
    if value is not None and (not isinstance(value, (int, float)) or math.isnan(value)):
        raise UnusableValue(f"returned {value!r}; expected a float or None")
    return None if value is None else float(value)


def try_call_one(
    fn,
    prompt,
    completion: str,
    columns: dict,
    sample_index: int = 0,
    shape: str = "auto",
    trainer_state: TrainerState | None = None,
) -> tuple[str, object, tuple[dict, dict]]:
    """``("ok", score, logged)``, or ``("error", what went wrong, logged)`` when the reward raised or
    returned junk; ``logged``: what it logged (``RewardLog.plain``)."""
    log = RewardLog()
    try:
        return (
            "ok",
            call_one(fn, prompt, completion, columns, sample_index, shape, trainer_state, log),
            log.plain(),
        )
    except UnusableValue as exc:
        return "error", str(exc), log.plain()
    except Exception as exc:
        return "error", f"raised {describe_error(exc)}", log.plain()


class _Worker:
    """A fresh interpreter running ``rewards._pool_worker``, in a session of its own.

    Not multiprocessing: its spawn start method re-imports the parent's ``__main__`` (a user's
    training script, or ``<stdin>``) in every worker, and fork is unsafe in a process running torch.
    """

    def __init__(self, calls: dict[str, RewardCall]):
        ours, theirs = socket.socketpair()
        # The worker must import what this process can: the same module search path.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewards._pool_worker", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
            start_new_session=True,  # its own process group: a kill reaches whatever a reward started
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.task = None  # (reward name, sample index, deadline) while busy
        self.conn.send(calls)
        status, message = self.conn.recv() if self.conn.poll(STARTUP_SECONDS) else ("error", "did not start")
        if status != "ready":
            self.kill()
            raise RuntimeError(f"a reward worker process failed to start: {message}")

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.conn.close()


class RewardPool:
    """Workers that score completions with a fixed set of named rewards (those that read environments run
    here, see above)."""

    def __init__(self, calls: dict[str, RewardCall], workers: int, timeout: float):
        self.calls, self.timeout, self.workers = calls, timeout, workers
        self.functions = {name: call.resolve() for name, call in calls.items()}  # fails early, here
        self.reading_environments = [name for name, fn in self.functions.items() if takes_environments(fn)]
        self.remote = {n: c for n, c in calls.items() if workers and n not in self.reading_environments}
        self._workers = [_Worker(self.remote) for _ in range(workers)] if self.remote else []
        self.logs = BatchLogs()  # what the rewards logged while scoring the last batch

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def score(
        self,
        prompts: list,
        completions: list[str],
        columns: dict[str, list],
        environments: list | None = None,
    ) -> tuple[dict[str, list[float | None]], list[Failure]]:
        """Every reward on every completion: values (None where the reward does not apply or failed).

        ``columns``: one value per completion, except ``trainer_state`` (one for the batch).
        ``environments``: the instance that ran each completion, for the rewards that read them.
        """
        columns = dict(columns)
        trainer_state = columns.pop("trainer_state", None)
        scores = {name: [None] * len(completions) for name in self.calls}
        failures: list[Failure] = []
        self.logs = BatchLogs(size=len(completions))
        timeouts_in_a_row = dict.fromkeys(self.calls, 0)
        given_up: set[str] = set()

        def record(name, i, outcome, value, logged=({}, {})):
            self.logs.add(name, i, logged)
            if outcome == "ok":
                scores[name][i] = value
            else:
                failures.append(Failure(name, i, value))
            timed_out = outcome == "timeout"
            timeouts_in_a_row[name] = timeouts_in_a_row[name] + 1 if timed_out else 0
            if timeouts_in_a_row[name] >= BREAKER:
                given_up.add(name)

        def skip(name, i) -> bool:
            if name in given_up:
                failures.append(Failure(name, i, f"skipped: timed out {BREAKER} times in a row"))
            return name in given_up

        pending = deque((name, i) for name in self.remote for i in range(len(completions)))
        while pending or any(w.task for w in self._workers):
            for worker in self._workers:
                while worker.task is None and pending:
                    name, i = pending.popleft()
                    if skip(name, i):
                        continue
                    row = {k: [v[i]] for k, v in columns.items()}
                    worker.conn.send((name, prompts[i], completions[i], row, trainer_state))
                    worker.task = (name, i, time.monotonic() + self.timeout)
            busy = [w for w in self._workers if w.task]
            if not busy:
                continue
            ready = wait(
                [w.conn for w in busy], timeout=max(0.0, min(w.task[2] for w in busy) - time.monotonic())
            )
            for slot, worker in enumerate(self._workers):
                if worker.task is None:
                    continue
                name, i, deadline = worker.task
                if worker.conn in ready:
                    try:
                        outcome, value, logged = worker.conn.recv()
                    except (EOFError, OSError):
                        exit_code = worker.process.wait()
                        outcome, value = "error", f"crashed its worker process (exit code {exit_code})"
                        logged = ({}, {})
                        self._replace(slot)
                    record(name, i, outcome, value, logged)
                    worker.task = None
                elif time.monotonic() >= deadline:
                    self._replace(slot)
                    record(name, i, "timeout", f"timed out after {self.timeout:g} s")

        here_columns = {**columns, "environments": environments or [None] * len(completions)}
        for name in (n for n in self.calls if n not in self.remote):
            reward_columns = here_columns if name in self.reading_environments else columns
            for i in range(len(completions)):
                if not skip(name, i):
                    called = self._call_here(
                        name, prompts[i], completions[i], reward_columns, i, trainer_state
                    )
                    record(name, i, *called)
        return scores, failures

    def _call_here(self, name, prompt, completion, columns, i, trainer_state) -> tuple[str, object, tuple]:
        """One call in this process: in a thread under the time limit, or (``workers=0``) without one."""

        def call():
            shape = self.calls[name].completions
            return try_call_one(self.functions[name], prompt, completion, columns, i, shape, trainer_state)

        if not self.workers:
            return call()
        result = []
        thread = threading.Thread(target=lambda: result.append(call()), name=f"reward {name}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if result:
            return result[0]
        if not thread.is_alive():  # what try_call_one does not catch: SystemExit, KeyboardInterrupt
            return "error", "ended its thread without returning (sys.exit?)", ({}, {})
        return (
            "timeout",
            f"timed out after {self.timeout:g} s (left running in a thread of the trainer)",
            ({}, {}),
        )

    def _replace(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self.remote)


def default_workers() -> int:
    """One worker per CPU this process may use, shared among the processes of a local launch, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, cpus // local_processes))
