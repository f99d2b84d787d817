"""What a weight push sends to vLLM, checked without starting vLLM: a stand-in records each push."""

import copy

import torch
from peft import get_peft_model

from reasonkit.config import LoRASettings
from reasonkit.models import load_model, lora_config
from reasonkit.rollout.vllm_engine import VLLMEngine


class RecordingLLM:
    """Takes a push as vLLM's in-process engine does (pulling the (name, tensor) iterator to its end) and keeps
    a copy of what it was sent."""

    def __init__(self):
        self.pushed = {}

    def collective_rpc(self, method, kwargs):
        assert method == "reload_weights" and kwargs["is_checkpoint_format"]
        self.pushed = {name: tensor.clone() for name, tensor in kwargs["weights_iterator"]}

    def reset_prefix_cache(self):
        pass


def recording_engine() -> VLLMEngine:
    engine = VLLMEngine.__new__(VLLMEngine)  # __init__ would start vLLM
    engine.llm, engine.sleep_mode, engine.asleep = RecordingLLM(), False, False
    return engine


def bf16_lora_policy(model_dir):
    policy = get_peft_model(load_model(str(model_dir), dtype="bfloat16"), lora_config(LoRASettings(r=4)))
    torch.manual_seed(0)
    with torch.no_grad():  # B starts at zero (adapters are a no-op): give them an effect
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    return policy


def test_pushing_a_bf16_lora_policy_leaves_its_base_weights_bit_identical(tiny_model_dir):
    policy = bf16_lora_policy(tiny_model_dir)
    base_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    engine = recording_engine()
    for _ in range(100):  # a hundred optimisation steps' worth of syncs
        engine.sync_weights(policy)
    for name, p in policy.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base_before[name]), name  # the frozen base is also the KL reference


def test_a_lora_policy_is_pushed_with_its_adapters_merged_under_the_base_names(tiny_model_dir):
    policy = bf16_lora_policy(tiny_model_dir)
    engine = recording_engine()
    engine.sync_weights(policy)
    merged = copy.deepcopy(policy).merge_and_unload().state_dict()
    assert set(engine.llm.pushed) == set(merged)
    for name, tensor in engine.llm.pushed.items():
        assert tensor.dtype == torch.bfloat16
        # one bf16 rounding apart at most: the push sums in float32, merge_and_unload adds in place in bf16
        torch.testing.assert_close(tensor, merged[name], rtol=2**-7, atol=2**-12)
