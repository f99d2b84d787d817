"""`make bench --quick` runs every section end to end (both sides of each comparison, for real) and
writes its report. Not a timing test: the figures are not checked, only that each was measured."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_measures_every_section(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for heading in ["## GRPO step", "## GRPO step with a tool", "## Rollout", "## Reward scoring", "## SFT",
                    "## Log-prob pass memory"]:  # fmt: skip
        assert heading in report, report
    assert "failed" not in report and "nan" not in report, report
    assert "python benchmarks/bench.py --quick" in report
    # both trainers called the calculator in most completions: the same work on both sides
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
