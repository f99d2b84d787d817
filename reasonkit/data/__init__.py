"""(x, t, y) datasets: loading, validation and chat formatting."""

from reasonkit.data.chat import FormattedExample, PromptFormat, prompt_format, tokenize_for_sft
from reasonkit.data.traces import DataError, TraceExample, load_examples, load_prompt_rows, rl_split

__all__ = [
    "DataError",
    "FormattedExample",
    "PromptFormat",
    "TraceExample",
    "load_examples",
    "load_prompt_rows",
    "prompt_format",
    "rl_split",
    "tokenize_for_sft",
]
