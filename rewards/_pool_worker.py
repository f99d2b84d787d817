"""A reward worker process (see ``rewards.pool``): resolve the rewards, then score one completion per message."""

import signal
import sys
from multiprocessing.connection import Connection

from rewards.pool import try_call_one


def main(fd: int) -> None:
    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    calls = conn.recv()
    try:
        functions = {name: call.resolve() for name, call in calls.items()}
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            name, prompt, completion, columns, trainer_state = conn.recv()
        except EOFError:  # the trainer closed the pool or died
            return
        shape = calls[name].completions
        conn.send(try_call_one(functions[name], prompt, completion, columns, 0, shape, trainer_state))


if __name__ == "__main__":
    main(int(sys.argv[1]))
