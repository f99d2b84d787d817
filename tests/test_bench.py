"""`make bench --quick` runs every section end to end (both sides of each comparison, for real) and
writes its report. Not a timing test: the figures are not checked, only that each was measured. The
demos' reports are checked on figures written here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


HEADINGS = {
    "grpo": "## GRPO step:",
    "grpo_tools": "## GRPO step with a tool",
    "sft": "## SFT",
    "rewards": "## Reward scoring",
    "rollout": "## Rollout",
    "memory": "## Log-prob pass memory",
}


@pytest.mark.parametrize(
    "sections",
    [
        # The sides that reach deepest into our trainers (grpo_step.py drives GRPORun's own parts): every run.
        pytest.param(["grpo", "grpo_tools", "sft", "rewards"], id="training"),
        # About 2 minutes more (vLLM started twice, a model of Qwen's vocabulary built): make test-all.
        pytest.param(["rollout", "memory"], id="rollout-memory", marks=pytest.mark.slow),
    ],
)
def test_quick_bench_measures_every_section(tmp_path, sections):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--only", *sections,
         "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for section in sections:
        assert HEADINGS[section] in report, report
    assert "failed" not in report and "nan" not in report, report
    assert "python benchmarks/bench.py --quick" in report
    if "grpo_tools" in sections:  # both trainers called the calculator in most completions: the same work
        tools_row = next(
            line for line in report.splitlines() if line.startswith("| tiny | ") and "calculator" in line
        )
        calls = [float(side) for side in tools_row.split(" | ")[5].split(" / ")]
        assert min(calls) > 0.5, tools_row


def test_trl_and_reasonkit_read_the_benchmark_models_tool_calls_alike():
    """The tiny chat template is none TRL knows: the benchmark's response template makes TRL's parser (and
    ours, which takes it when a tokenizer has one) read its calls; TRL's other checks pass as they are."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import TOOL_RESPONSE_TEMPLATE, tool_conversation
    from trl.chat_template_utils import (
        is_chat_template_prefix_preserving,
        parse_response,
        supports_tool_calling,
    )

    from reasonkit.models import train_tiny_tokenizer
    from reasonkit.tasks import arithmetic_splits
    from reasonkit.tools.builtin import calculator
    from reasonkit.tools.calls import ToolCall, parse_with_template
    from reasonkit.tools.template import conversation_ids

    problem = arithmetic_splits(digits=2)["train"][0]
    messages = tool_conversation(problem)
    tokenizer = train_tiny_tokenizer([m["content"] for m in messages])
    tokenizer.response_template = TOOL_RESPONSE_TEMPLATE
    assert supports_tool_calling(tokenizer) and is_chat_template_prefix_preserving(tokenizer)
    ids, mask = conversation_ids(tokenizer, messages, [calculator])
    first = mask.index(1)
    call_end = ids.index(tokenizer.eos_token_id, first) + 1  # the calling turn, its EOS included
    call = messages[1]["tool_calls"][0]
    parsed = parse_response(tokenizer, ids[first:call_end], prefix=ids[:first], tools=[calculator])
    assert parsed["tool_calls"] == [call] and parsed["content"] == "<think>"
    assert parse_with_template(tokenizer, ids[first:call_end], ids[:first], None) == [
        ToolCall("calculator", call["function"]["arguments"])
    ]
    answer = len(mask) - mask[::-1].index(0)  # the turn after the result
    assert parse_response(tokenizer, ids[answer:], prefix=ids[:answer]) == {
        "role": "assistant",
        "content": messages[-1]["content"],
    }


def test_write_replaces_only_its_own_block_of_benchmarks_md():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import markers, replace_block

    (begin, end), (vllm_begin, vllm_end) = markers("bench"), markers("bench-vllm")
    document = f"intro\n{begin}\nold tables\n{end}\nhand-written\n{vllm_begin}\nold vLLM\n{vllm_end}\ntail\n"
    new = f"{vllm_begin}\nnew vLLM\n{vllm_end}\n"
    assert replace_block(document, "bench-vllm", new) == (
        f"intro\n{begin}\nold tables\n{end}\nhand-written\n{new}tail\n"
    )
    # a block the document lacks is appended
    assert replace_block("intro\n", "bench-vllm", new) == f"intro\n\n{new}"


def test_latent_demo_report_checks_the_floors_and_sets_equal_token_models_side_by_side(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from latent_demo import report, side_by_side

    def result(pass_at_1, tokens):
        return {"test": {"pass@1": {"value": pass_at_1}, "generated_tokens": tokens}}

    models = {
        "direct": result(0.15, 4.8),
        "trace": result(0.96, 37.4),
        "latent_stage2": result(0.80, 17.8),  # below 85% of the trace's 96%
        "latent_grpo": result(0.90, 17.8),
    }
    folder = tmp_path / "seed-0"
    folder.mkdir()
    (folder / "summary.json").write_text(
        json.dumps({"stages": {"eval": {"models": models}}, "wall_seconds": 9})
    )

    floors = report(tmp_path, [0], {})[0]["floors"]

    assert floors == {
        "latent_stage2 >= 85% of trace accuracy": False,
        "latent_stage2 <= 60% of trace tokens": True,
        "trace >= direct + 30 points": True,
    }
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert "latent_stage2" in capsys.readouterr().out
    offsets = side_by_side({name: m["test"]["generated_tokens"] for name, m in models.items()})
    assert offsets["direct"] == offsets["trace"] == 0
    assert offsets["latent_stage2"] < 0 < offsets["latent_grpo"]
