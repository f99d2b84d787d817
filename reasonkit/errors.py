"""The base of every error a user can fix, so the CLI catches one class."""


class ReasonkitError(Exception):
    """Bad input, a missing package, a run that cannot go on. The message says what happened and what to
    do; the CLI prints it without a traceback and exits 2."""
