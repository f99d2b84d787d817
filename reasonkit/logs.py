"""Where log records go, so the console shows reasonkit's progress and nothing else.

- The console (stderr) gets reasonkit's own records (``reasonkit.*``, ``rewards.*``) and any library's
  errors. Library progress bars (transformers' weight loading and saving, datasets' map) are off;
  huggingface_hub's download bars stay, as a long download would otherwise look like a hang.
- Every other library record (accelerate's checkpoint lines, its "Removed shared tensor" warning,
  transformers', TRL's and DeepSpeed's warnings, Python warnings) goes to a log file: a run's
  ``<output_dir>/run.log``, which ``write_library_log`` opens once the folder is ready. Until then they
  are held in memory. A command with no log file (``--dry-run``, ``validate``) shows library warnings
  on the console instead.
- Processes other than a launch's main one show errors only, and print nothing to stdout (their stage
  banners would repeat the main one's); their records go to the same log file, marked with their rank.
  torch's C++ warnings bypass Python's logging: the main process shows them, the others drop them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import logging.handlers
import os
import sys
from pathlib import Path

OURS = ("reasonkit", "rewards", "__main__")
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Libraries that attach a console handler of their own to their top logger when imported.
OWN_HANDLERS = ("transformers", "datasets", "huggingface_hub")

_installed: list[logging.Handler] = []
_pending: logging.handlers.MemoryHandler | None = None
_saved_stdout = None
_saved_level: int | None = None


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (tqdm and test captures swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _ConsoleFilter(logging.Filter):
    def __init__(self, main_process: bool, library_warnings: bool):
        super().__init__()
        self.main_process, self.library_warnings = main_process, library_warnings

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if not self.main_process:
            return False
        if record.name.split(".")[0] in OURS:
            return True
        return self.library_warnings and record.levelno >= logging.WARNING


def rank() -> int:
    """This process's rank in a launch (accelerate launch, torchrun), known before any set-up."""
    return int(os.environ.get("RANK", "0"))


def setup(log_file_follows: bool) -> None:
    """Route records as the module says; ``log_file_follows``: the command opens a log file
    (``write_library_log``), so library records wait for it instead of reaching the console."""
    global _pending, _saved_stdout, _saved_level
    close()
    main_process = rank() == 0
    console = _Stderr()
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(_ConsoleFilter(main_process, library_warnings=not log_file_follows))
    _installed.append(console)
    if log_file_follows:
        # Held until the run folder exists; a run that fails before then shows its errors anyway.
        _pending = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        _installed.append(_pending)
    root = logging.getLogger()
    _saved_level = root.level
    root.setLevel(logging.INFO)
    for handler in _installed:
        root.addHandler(handler)
    logging.captureWarnings(True)
    if not main_process:
        _saved_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
        # torch's C++ warnings (DDP's "find_unused_parameters=True ...") go straight to stderr, past
        # Python's logging; the main process still shows them. Read when torch loads, which the
        # command line has not done yet.
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")


def quiet_libraries(deepspeed: bool) -> None:
    """Send the model and data libraries' records through the root logger, and turn off their
    progress bars. Imports them (``deepspeed``: DeepSpeed too, where installed): call it in commands
    that import them anyway."""
    import datasets
    import huggingface_hub.utils
    import transformers

    if deepspeed:
        _adopt_deepspeed_logger()
    for name in OWN_HANDLERS:
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            if type(handler) is logging.StreamHandler:  # their console handler, not a file someone added
                library.removeHandler(handler)
        library.propagate = True
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # transformers turned the hub's bars off with its own; downloads keep theirs.
    huggingface_hub.utils.enable_progress_bars()


def write_library_log(path: Path) -> None:
    """Append the records held so far, and every later one, to ``path``. Does nothing when ``setup``
    did not run (reasonkit used as a library: the caller's logging set-up stands)."""
    global _pending
    if _pending is None:
        return
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{rank()} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    _installed.append(handler)
    _pending.setTarget(handler)
    _pending.flush()
    root.removeHandler(_pending)
    _installed.remove(_pending)
    _pending.close()
    _pending = None


def close(show_held: bool = True) -> None:
    """Undo ``setup`` (the command line calls it when a command returns). Library warnings still
    held (the command ended before its log file opened) go to the console with ``show_held``."""
    global _pending, _saved_stdout, _saved_level
    if _pending is not None and show_held and rank() == 0:
        console = _installed[0]
        for record in _pending.buffer:
            if record.levelno >= logging.WARNING and not console.filter(record):  # not shown yet
                console.emit(record)
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    _pending = None
    logging.captureWarnings(False)
    if _saved_level is not None:
        root.setLevel(_saved_level)
        _saved_level = None
    if _saved_stdout is not None:
        sys.stdout.close()
        sys.stdout, _saved_stdout = _saved_stdout, None


def _adopt_deepspeed_logger() -> None:
    """DeepSpeed gives its logger a handler of its own on stdout when imported, and logs through it at
    once ("Setting accelerator to CPU"). Import it here with stdout caught, then let its records
    propagate like every other library's. accelerate imports it anyway when it is installed."""
    if importlib.util.find_spec("deepspeed") is None:
        return
    caught = io.StringIO()
    with contextlib.redirect_stdout(caught):
        from deepspeed.utils import logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    for line in caught.getvalue().splitlines():
        if line.strip():
            logger.warning(line.strip())
