"""The ``tools:`` section of the GRPO and eval stages and of ``reasonkit generate``: which tools the model
may call while it answers, and the limits of the multi-turn loop (``reasonkit/tools/loop.py``).

Apart from the loop, which imports torch: reading a recipe does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ToolSettings:
    # Functions the model may call, as TRL's `tools=[...]`: built-in names (python, calculator) or your
    # own as package.module:function / path/to/file.py:function. Each needs type hints and a Google-style
    # docstring describing every argument: its JSON schema is built from them (transformers'
    # get_json_schema) and shown to the model through the chat template's `tools=`.
    functions: list[str] = field(default_factory=list)
    # TRL's environment_factory: a class (or function) building one environment per completion, as
    # package.module:Name or path/to/file.py:Name; its `reset(**row)` may return text appended to the
    # prompt, its public methods are tools, its optional `get_reward()` becomes a reward. A mapping
    # {name: factory} picks each prompt's environment by the data's `environment` column.
    environment_factory: str | dict[str, str] | None = None
    # Tool calls per completion, at most (the model's turns after it are its last); 0: no tools.
    max_calls: int = 5
    # Seconds one call may take; past it the model reads an error (a function stuck in a thread is left
    # running there: an async function is cancelled, the python tool's sandbox is killed).
    timeout: float = 10.0
    # A tool result is cut to this many characters (the model reads that it was cut).
    max_result_chars: int = 2000

    @property
    def enabled(self) -> bool:
        return bool(self.functions or self.environment_factory) and self.max_calls > 0
