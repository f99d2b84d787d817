"""GRPO with tools, as a user runs it: a recipe with a `tools:` section, the model calling the calculator
while it answers, every turn in completions.jsonl, the tool metrics per step and in the summary."""

import json
from pathlib import Path

from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.helpers.tool_model import CONVERSATIONS

ROWS = [{"prompt": q, "answer": c[-1]["content"].split("</think>")[-1]} for q, c in CONVERSATIONS.items()]


def write_rows(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tool_recipe(output_dir, model_dir, data, tools=None, **stage):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "seed": 0,
            "model": {"path": str(model_dir)},
            "data": {"train": {"path": str(data)}},
            "stages": {
                "grpo": {
                    "rewards": [{"name": "exact_answer"}],
                    "prompts_per_step": 3,
                    "num_generations": 4,
                    "max_new_tokens": 80,
                    "learning_rate": 1e-4,
                    "beta": 0.04,
                    "max_steps": 2,
                    "save_steps": 100,
                    "engine": "transformers",
                    "tools": tools or {"functions": ["calculator"]},
                    **stage,
                }
            },
        }
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grpo_with_a_tool_on_transformers(tool_model_dir, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    summary = run_recipe(tool_recipe(tmp_path / "run", tool_model_dir, data))
    records = read_jsonl(tmp_path / "run" / "grpo" / "metrics.jsonl")
    for record in records:
        assert record["tools/calls_per_completion"] > 0.5  # the model has learnt to call
        assert record["tools/calculator_per_completion"] == record["tools/calls_per_completion"]
        assert 0 <= record["tools/failed_share"] <= 1 and record["accuracy"] > 0.5
    step = read_jsonl(tmp_path / "run" / "grpo" / "completions.jsonl")[0]
    assert len(step["turns"]) == len(step["completion"]) == 12
    turns = next(t for t, p in zip(step["turns"], step["prompt"]) if p == "27*31?")
    assert {"role": "tool", "name": "calculator", "content": "837"} in turns
    assert summary["stages"]["grpo"]["last_tool_calls"] > 0.5
