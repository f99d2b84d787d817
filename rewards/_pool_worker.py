"""A reward worker process (see ``rewards.pool``): resolve the rewards, then score one completion per message."""

import signal
import sys
from multiprocessing.connection import Connection

from rewards.pool import call_one, describe_exception


def main(fd: int) -> None:
    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    calls = conn.recv()
    try:
        functions = {name: call.resolve() for name, call in calls.items()}
    except Exception as exc:
        conn.send(("error", describe_exception(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            name, prompt, completion, columns = conn.recv()
        except EOFError:  # the trainer closed the pool or died
            return
        try:
            conn.send(("ok", call_one(functions[name], prompt, completion, columns)))
        except Exception as exc:
            conn.send(("error", describe_exception(exc)))


if __name__ == "__main__":
    main(int(sys.argv[1]))
