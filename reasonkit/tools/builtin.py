"""The built-in tools a recipe names by name: ``python`` and ``calculator``.

Both are plain functions with the type hints and docstring a tool needs (their schema is built from them
like any user's). Neither runs model output in the trainer's process: ``python`` runs it in the reward
sandbox (``rewards/sandbox.py``: a fresh process per call, no network, resource limits, a hard
wall-clock kill), ``calculator`` walks the expression's syntax tree and evaluates numbers and operators
only (no names, calls or attributes: nothing of Python is reachable).
"""

from __future__ import annotations

import ast
import math
import operator

from rewards.sandbox import Limits, run_python

# Larger results are refused: 10**10**10 would take the trainer's memory and time.
MAX_POWER_DIGITS = 1000


def python(code: str) -> str:
    """Run Python code in a sandbox and return what it printed.

    Args:
        code: A complete Python program. Use print() to show results; each call starts afresh.
    """
    result = run_python(code, limits=Limits(wall_seconds=5.0, cpu_seconds=5))
    if result.timed_out:
        return f"{result.stdout}\nError: timed out after {result.wall_seconds:.0f} s".strip()
    output = result.stdout
    if result.exit_code != 0:
        # the last line of a traceback says what went wrong; the rest is the sandbox's file paths
        last = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
        output = f"{output}\nError: {last[0]}".strip()
    return output


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.

    Args:
        expression: The expression, for example "(27 + 4) * 918".

    >>> calculator("27 * 34")
    '918'
    >>> calculator("7 / 2"), calculator("2 ** 0.5")
    ('3.5', '1.4142135623730951')
    >>> calculator("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: only numbers and + - * / // % ** are allowed, not Call
    """
    value = _evaluate(ast.parse(expression.strip(), mode="eval").body)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)


def _evaluate(node: ast.AST):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) * math.log10(max(abs(left), 2)) > MAX_POWER_DIGITS:
            raise ValueError(f"the result would have more than {MAX_POWER_DIGITS} digits")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")
