"""Rewards that misbehave on purpose, loaded by path like a user's file. The completion says how."""

import os
import signal
import subprocess
import sys
import time


def by_instruction(prompts, completions, **kwargs):
    scores = []
    for completion in completions:
        if completion == "hang":
            time.sleep(3600)
        elif completion == "crash":
            os._exit(3)
        elif completion == "raise":
            raise ValueError("cannot score this")
        elif completion.startswith("spawn-and-hang:"):  # a child that would outlive the reward
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            with open(completion.split(":", 1)[1], "w") as f:
                f.write(str(child.pid))
            time.sleep(3600)
        elif completion == "wrong-type":
            return ["1.0"]
        scores.append(1.0)
    return scores


def always_hangs(prompts, completions, **kwargs):
    time.sleep(3600)


def which_process(prompts, completions, **kwargs):
    time.sleep(0.2)  # long enough that a free worker picks up the next sample
    return [float(os.getpid()) for _ in completions]


def uses_alarm(prompts, completions, **kwargs):
    """Times itself out the way math-verify does: SIGALRM, which only works in a main thread."""

    def give_up(signum, frame):
        raise TimeoutError

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(1)
    try:
        while True:
            pass
    except TimeoutError:
        return [0.5 for _ in completions]
    finally:
        signal.alarm(0)


def reads_environments(environments, completions, log_metric, **kwargs):
    """TRL's environment reward (the environment's state after the rollout), misbehaving as the completion
    says; it marks the instance with the process that read it."""
    (environment,) = environments
    environment.read_in = os.getpid()
    if completions[0] == "hang":
        environment.release.wait()
    elif completions[0] == "raise":
        raise ValueError("no reward in this environment")
    log_metric("reward_seen", environment.reward)
    return [environment.reward]
