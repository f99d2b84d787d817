import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rewards.pool import BREAKER, RewardCall, RewardPool

HERE = Path(__file__).parents[1] / "helpers" / "misbehaving_rewards.py"


def pool(*names, workers=2, timeout=2.0) -> RewardPool:
    return RewardPool({n: RewardCall(f"{HERE}:{n}") for n in names}, workers=workers, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, only not yet reaped
        return f.read().split(")")[-1].split()[0] != "Z"


def test_hang_crash_and_raise_cost_one_sample_each_and_are_named():
    completions = ["ok", "hang", "crash", "raise", "wrong-type", "ok"]
    with pool("by_instruction") as p:
        scores, failures = p.score(["p"] * 6, completions, {})
        assert scores["by_instruction"] == [1.0, None, None, None, None, 1.0]
        reasons = {f.sample: f.reason for f in failures}
        assert reasons[1] == "timed out after 2 s"
        assert reasons[2] == "crashed its worker process (exit code 3)"
        assert reasons[3] == "raised ValueError: cannot score this"
        assert reasons[4] == "returned '1.0'; expected a float or None"
        hang = next(f for f in failures if f.sample == 1)
        assert hang.describe(["p"] * 6, completions) == (
            "reward 'by_instruction' timed out after 2 s on sample 1 (prompt 'p', completion 'hang')"
        )
        # the replaced workers keep scoring
        assert p.score(["p"], ["ok"], {}) == ({"by_instruction": [1.0]}, [])


def test_a_hung_reward_takes_the_processes_it_started_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pool("by_instruction", timeout=3.0) as p:
        _, failures = p.score(["p"], [f"spawn-and-hang:{pid_file}"], {})
    assert failures[0].reason == "timed out after 3 s"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_reward_that_always_hangs_is_given_up_after_a_few_calls():
    with pool("always_hangs", timeout=0.5) as p:
        scores, failures = p.score(["p"] * 12, ["x"] * 12, {})
    assert scores["always_hangs"] == [None] * 12
    timed_out = [f for f in failures if f.reason.startswith("timed out")]
    # the workers were busy with BREAKER-1 + workers calls at most when the breaker tripped
    assert BREAKER <= len(timed_out) <= BREAKER + 1
    assert len(failures) == 12


def test_samples_are_scored_in_several_processes_at_once():
    with pool("which_process", workers=2) as p:
        scores, failures = p.score(["p"] * 6, ["x"] * 6, {})
    assert not failures
    assert len(set(scores["which_process"])) == 2
    assert os.getpid() not in scores["which_process"]


def test_rewards_run_in_a_main_thread_where_sigalrm_works():
    with pool("uses_alarm", workers=1) as p:
        assert p.score(["p"], ["x"], {}) == ({"uses_alarm": [0.5]}, [])


class Environment:
    """An environment instance as a rollout leaves it; its lock makes it impossible to send to a worker."""

    def __init__(self, reward: float):
        self.reward, self.lock, self.release, self.read_in = reward, threading.Lock(), threading.Event(), None


def test_a_reward_reading_environments_gets_each_completions_instance_in_this_process():
    environments = [Environment(reward=float(i)) for i in range(4)]
    with pool("by_instruction", "reads_environments") as p:
        scores, failures = p.score(["p"] * 4, ["ok"] * 4, {}, environments)
        assert not failures
        assert scores == {"by_instruction": [1.0] * 4, "reads_environments": [0.0, 1.0, 2.0, 3.0]}
        assert [e.read_in for e in environments] == [os.getpid()] * 4  # not a copy in a worker
        assert p.logs.metric_means() == {"reward/reads_environments/reward_seen": 1.5}


def test_a_reward_reading_environments_that_raises_or_hangs_fails_its_samples_and_is_given_up():
    environments = [Environment(reward=1.0) for _ in range(8)]
    try:
        with pool("reads_environments", timeout=0.5) as p:
            scores, failures = p.score(["p"] * 8, ["ok", "raise"] + ["hang"] * 6, {}, environments)
    finally:
        for environment in environments:  # the hung threads end
            environment.release.set()
    assert scores["reads_environments"] == [1.0] + [None] * 7
    reasons = [f.reason for f in failures]
    assert reasons[0] == "raised ValueError: no reward in this environment"
    assert (
        reasons[1 : 1 + BREAKER]
        == ["timed out after 0.5 s (left running in a thread of the trainer)"] * BREAKER
    )
    assert reasons[1 + BREAKER :] == [f"skipped: timed out {BREAKER} times in a row"] * (
        6 - BREAKER
    )  # the hangs after the breaker tripped


def test_columns_reach_the_reward_one_row_at_a_time(tmp_path):
    reward = tmp_path / "echo.py"
    reward.write_text(
        "def echo(prompts, completions, answer, **kw):\n    return [float(answer[0]) + len(completions[0])]\n"
    )
    with RewardPool({"echo": RewardCall(f"{reward}:echo")}, workers=1, timeout=5) as p:
        scores, _ = p.score(["p", "q"], ["a", "bb"], {"answer": ["10", "20"]})
    assert scores["echo"] == [11.0, 22.0]


def test_in_process_mode_has_no_workers_but_reports_the_same_way():
    with pool("by_instruction", workers=0) as p:
        scores, failures = p.score(["p"] * 2, ["ok", "raise"], {})
    assert scores["by_instruction"] == [1.0, None]
    assert failures[0].reason == "raised ValueError: cannot score this"


def test_bound_arguments_reach_the_reward(tmp_path):
    reward = tmp_path / "scaled.py"
    reward.write_text(
        "def scaled(prompts, completions, factor=1.0, **kw):\n    return [factor for _ in completions]\n"
    )
    with RewardPool({"s": RewardCall(f"{reward}:scaled", {"factor": 3.0})}, workers=1, timeout=5) as p:
        assert p.score(["p"], ["a"], {})[0] == {"s": [3.0]}


def test_an_unknown_reward_fails_when_the_pool_is_made():
    with pytest.raises(LookupError, match="unknown reward"):
        RewardPool({"x": RewardCall("no_such_reward")}, workers=1, timeout=1)


def test_works_from_any_main_module_even_stdin(tmp_path):
    """Workers do not re-import the caller's __main__ (multiprocessing's spawn would, and fail on <stdin>)."""
    script = (
        "from rewards.pool import RewardCall, RewardPool\n"
        "with RewardPool({'e': RewardCall('exact_answer')}, workers=2, timeout=10) as p:\n"
        "    print(p.score(['q'] * 3, ['<think>.</think>2'] * 3, {'answer': ['2', '3', '2']}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert out.stdout.strip() == "({'e': [1.0, 0.0, 1.0]}, [])", out.stderr[-2000:]


def test_reward_logs_of_several_processes_are_put_together_in_batch_order(tmp_path):
    """Each process scores its share of the batch; what the rewards logged is gathered like the scores,
    even where a reward logged on one process only (every process makes the same gather calls)."""
    from reasonkit.metrics import reward_logs

    reward = tmp_path / "logging.py"
    reward.write_text(
        "def logs(prompts, completions, log_metric, log_extra, trainer_state, **kw):\n"
        "    if completions[0] != 'quiet':\n"
        "        log_metric('chars', len(completions[0]))\n"
        "        log_extra('first', [completions[0][0]])\n"
        "    return [float(trainer_state.global_step)]\n"
    )
    shares = [["ab", "abcd"], ["quiet", "quiet"]]  # the second process's rewards log nothing
    slots, barrier, results = [None, None], threading.Barrier(2), [None, None]

    def gather(rank):
        def all_processes(values):
            slots[rank] = list(values)
            barrier.wait()
            joined = slots[0] + slots[1]
            barrier.wait()
            return joined

        return all_processes

    def process(rank):
        from rewards.convention import TrainerState

        with RewardPool({"r": RewardCall(f"{reward}:logs")}, workers=0, timeout=5) as p:
            scores, _ = p.score(["p"] * 2, shares[rank], {"trainer_state": TrainerState(global_step=3)})
            results[rank] = scores, reward_logs(p.logs, gather(rank), ["p"] * 2, shares[rank])

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for scores, (metrics, table) in results:
        assert scores == {"r": [3.0, 3.0]}
        assert metrics == {"reward/r/chars": 3.0}  # the mean of 2 and 4, over both processes
        assert table["r/first"] == ["a", "a", None, None] and table["completion"] == [
            "ab",
            "abcd",
            "quiet",
            "quiet",
        ]
