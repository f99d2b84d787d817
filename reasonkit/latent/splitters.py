"""How a trace is cut into the steps the curriculum replaces by thoughts, one splitter per name.

A splitter is ``fn(trace: str) -> list[str]``: the steps in order, whose concatenation with single
spaces is the trace as the model learns it. A recipe names one from ``SPLITTERS`` or its own as
``package.module:function`` / ``path/to/file.py:function`` (``latent.splitter``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from reasonkit.plugins import Registry

Splitter = Callable[[str], list[str]]

# A sentence ends at . ! or ? followed by white space; "3.5" or "e.g.x" stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(trace: str) -> list[str]:
    """The trace's sentences (the default).

    >>> sentences("27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918.")
    ['27 * 30 = 810.', '27 * 4 = 108.', '810 + 108 = 918.']
    >>> sentences("  Pi is 3.14 or so!  Done ")
    ['Pi is 3.14 or so!', 'Done']
    """
    return [part for part in _SENTENCE_END.split(trace.strip()) if part]


def lines(trace: str) -> list[str]:
    """One step per non-empty line (traces written a step a line).

    >>> lines("a = 1\\n\\nb = 2\\n")
    ['a = 1', 'b = 2']
    """
    return [line.strip() for line in trace.splitlines() if line.strip()]


SPLITTERS: Registry[Splitter] = Registry("trace splitter")
SPLITTERS.register("sentences", sentences)
SPLITTERS.register("lines", lines)
