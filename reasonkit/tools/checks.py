"""What ``reasonkit validate`` and ``--dry-run`` check of a ``tools:`` section, wherever a stage or command
has one: every tool loads and has a schema (``toolbox.check_tools``), and the model's chat template can
render tool calls and results (``template.template_problems``), each refused with what to fix.
"""

from __future__ import annotations

from reasonkit.errors import ReasonkitError
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.template import template_problems
from reasonkit.tools.toolbox import check_tools


def tools_problems(settings: ToolSettings, where: str, model_path: str | None) -> list[str]:
    """Problems with ``settings`` for the model at ``model_path`` (None: a tiny model built on the spot,
    whose template renders tools)."""
    problems = check_tools(settings, where)
    if model_path is not None:
        problems += chat_template_problems(model_path, where)
    return problems


def chat_template_problems(model_path: str, where: str) -> list[str]:
    """Why the chat template of the tokenizer at ``model_path`` cannot run tool turns (empty: it can)."""
    from reasonkit.models import load_tokenizer  # imports torch and transformers

    try:
        tokenizer = load_tokenizer(model_path)
    except ReasonkitError as exc:
        return [f"{where}: the chat template could not be checked: {exc}"]
    return [f"{where}: {model_path}: {problem}" for problem in template_problems(tokenizer)]
