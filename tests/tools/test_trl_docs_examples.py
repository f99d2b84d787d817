"""TRL's documented tools and environments (tests/tools/trl_docs_examples.py, unedited) in reasonkit
recipes: they load, their schemas reach the prompt, their calls run, their rewards score, and a GRPO
step trains."""

import json
from pathlib import Path

import pytest

from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from reasonkit.tools.calls import ToolCall, ToolRunner
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.toolbox import Toolbox

EXAMPLES = str(Path(__file__).parent / "trl_docs_examples.py")


def example(name: str) -> str:
    return f"{EXAMPLES}:{name}"


def run_calls(session, *calls: ToolCall) -> list:
    runner = ToolRunner(timeout=5, max_result_chars=200)
    try:
        return runner.run([(session, call) for call in calls])
    finally:
        runner.close()


def test_the_docs_tools_run_sync_and_async():
    (session,) = Toolbox(ToolSettings(functions=[example("multiply"), example("async_add")])).sessions([{}])
    assert session.tools["multiply"].schema["function"]["parameters"]["required"] == ["a", "b"]
    results = run_calls(
        session, ToolCall("multiply", {"a": 6, "b": 7}), ToolCall("async_add", {"a": 6, "b": 7})
    )
    assert [(r.content, r.failed) for r in results] == [("42", False), ("13", False)]


def test_the_docs_environment_keeps_its_state_and_scores_itself():
    toolbox = Toolbox(ToolSettings(environment_factory=example("IncrementEnvWithTarget")))
    first, second = toolbox.sessions([{"prompt": "p", "target": 3}, {"prompt": "p", "target": 3}])
    assert first.environment is not second.environment  # one instance per rollout
    results = run_calls(first, ToolCall("increment", {"step": 1}), ToolCall("increment", {"step": 2}))
    assert [r.content for r in results] == ["1", "3"]
    assert first.environment_reward() == ("IncrementEnvWithTarget", 1.0)
    assert second.environment_reward() == ("IncrementEnvWithTarget", 0.0)
    assert toolbox.reward_names() == ["IncrementEnvWithTarget"]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def docs_recipe(tmp_path, model_dir, rows, tools, rewards=()):
    return build_recipe(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"path": str(model_dir)},
            "data": {"train": {"path": str(write_rows(tmp_path / "rows.jsonl", rows))}},
            "stages": {
                "grpo": {
                    "rewards": [{"name": name} for name in rewards],
                    "prompts_per_step": 2,
                    "num_generations": 2,
                    "max_new_tokens": 24,
                    "max_steps": 1,
                    "engine": "transformers",
                    "tools": tools,
                }
            },
        }
    )


CASES = {
    "tools": (
        [{"prompt": "27*31?"}, {"prompt": "two calls: 12*12?"}],
        {"functions": [example("multiply"), example("async_add")]},
        [example("format_reward")],
        [],
    ),
    "environment_owns_the_task": (
        [{"id": 0}, {"id": 1}],
        {"environment_factory": example("IncrementEnv")},
        [],
        ["IncrementEnv"],
    ),
    "environment_with_a_dataset": (
        [
            {"prompt": [{"role": "user", "content": f"Increment the counter to {i}."}], "target": i}
            for i in (1, 2)
        ],
        {"environment_factory": example("IncrementEnvWithTarget")},
        [],
        ["IncrementEnvWithTarget"],
    ),
    "several_environments": (
        [{"environment": "coding"}, {"environment": "game"}],
        {"environment_factory": {"coding": example("CodingEnv"), "game": example("GameEnv")}},
        [example("format_reward")],
        [],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_docs_examples_train_in_a_recipe(tool_model_dir, tmp_path, case):
    rows, tools, rewards, environment_rewards = CASES[case]
    run_recipe(docs_recipe(tmp_path, tool_model_dir, rows, tools, rewards))
    (record,) = [
        json.loads(line) for line in (tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
    ]
    for name in environment_rewards:
        assert f"reward/{name}/mean" in record
    assert "tools/calls_per_completion" in record
    (step,) = [
        json.loads(line)
        for line in (tmp_path / "run" / "grpo" / "completions.jsonl").read_text().splitlines()
    ]
    assert len(step["turns"]) == 4
