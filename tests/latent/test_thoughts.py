"""The chain of continuous thoughts with the KV cache equals a full forward per thought (outputs and
gradients), on two architectures and under LoRA; pause tokens are one ordinary forward."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from reasonkit.latent.thoughts import chain_forward, completion_loss_sum, normalise_thought, positions

VOCAB, LATENT = 40, 39
ARCHITECTURES = {
    "llama": (LlamaForCausalLM, LlamaConfig),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config),
}


def tiny(architecture: str):
    model_class, config_class = ARCHITECTURES[architecture]
    config = config_class(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return model_class(config).eval()


def batch():
    """Three rows with <|bot|> in column 3: 3, 1 and 0 thoughts, left and right padding."""
    torch.manual_seed(1)
    input_ids = torch.randint(1, 30, (3, 10))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :2] = 0  # left padding
    attention_mask[2, 9:] = 0  # right padding
    thought_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    thought_mask[0, 4:7] = True
    thought_mask[1, 4:5] = True
    input_ids[thought_mask] = LATENT
    labels = torch.where(attention_mask.bool(), input_ids, -100)
    labels[:, :8] = -100  # the loss on the last columns, after every thought
    return input_ids, attention_mask, thought_mask, labels


def full_forward_per_thought(
    model, input_ids, attention_mask, thought_mask, bot, normalise=False, detach=False
):
    """The plain reference: for each thought column c, a forward over columns [0, c) without any cache; the
    state at c - 1 becomes column c's input; then one forward over the whole row."""
    embeds = model.get_input_embeddings()(input_ids)
    position_ids = positions(attention_mask)
    scale = model.get_input_embeddings().weight.detach().norm(dim=-1).mean() if normalise else None
    n = int(thought_mask.sum(-1).max())
    for column in range(bot + 1, bot + 1 + n):
        out = model(
            inputs_embeds=embeds[:, :column], attention_mask=attention_mask[:, :column],
            position_ids=position_ids[:, :column], output_hidden_states=True,
        )  # fmt: skip
        fed = normalise_thought(out.hidden_states[-1][:, -1], scale)
        fed = fed.detach() if detach else fed
        new = torch.where(thought_mask[:, column, None], fed, embeds[:, column])
        embeds = torch.cat([embeds[:, :column], new[:, None], embeds[:, column + 1 :]], dim=1)
    return model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids).logits


def gradients(model, logits, labels):
    model.zero_grad()
    loss, _ = completion_loss_sum(logits, labels)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
@pytest.mark.parametrize("normalise", [False, True])
def test_the_cached_chain_equals_a_full_forward_per_thought(architecture, normalise):
    model = tiny(architecture)
    input_ids, attention_mask, thought_mask, labels = batch()
    out = chain_forward(model, input_ids, attention_mask, thought_mask, 3, normalise=normalise)
    reference = full_forward_per_thought(model, input_ids, attention_mask, thought_mask, 3, normalise)
    assert out.passes == 4  # k*c + 1 passes: the prompt, two thoughts alone, the last thought and the rest
    real = attention_mask.bool()
    torch.testing.assert_close(out.logits[real], reference[real], rtol=1e-4, atol=1e-5)
    expected = gradients(model, reference, labels)
    got = gradients(model, out.logits, labels)
    assert expected.keys() == got.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-3, atol=1e-6, msg=name)


def test_the_gradient_through_the_thoughts_is_not_negligible():
    """What the equality above would miss if the chain detached its thoughts: the gradient it drops."""
    model = tiny("llama")
    input_ids, attention_mask, thought_mask, labels = batch()
    full = gradients(
        model, full_forward_per_thought(model, input_ids, attention_mask, thought_mask, 3), labels
    )
    cut = gradients(
        model,
        full_forward_per_thought(model, input_ids, attention_mask, thought_mask, 3, detach=True),
        labels,
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    assert (full[name] - cut[name]).norm() > 0.05 * full[name].norm()


def test_a_thought_is_the_last_hidden_state_not_the_placeholder():
    model = tiny("qwen2")
    input_ids, attention_mask, thought_mask, _ = batch()
    out = chain_forward(model, input_ids, attention_mask, thought_mask, 3)
    placeholder = model.get_input_embeddings().weight[LATENT]
    assert not torch.allclose(out.thoughts[0, 0], placeholder)
    first = model(input_ids=input_ids[:1, :4], output_hidden_states=True).hidden_states[-1][0, -1]
    torch.testing.assert_close(out.thoughts[0, 0], first, rtol=1e-4, atol=1e-5)


def test_pause_tokens_are_one_ordinary_forward():
    model = tiny("llama")
    input_ids, attention_mask, thought_mask, _ = batch()
    out = chain_forward(model, input_ids, attention_mask, thought_mask, 3, feedback=False)
    plain = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask))
    assert out.passes == 1
    torch.testing.assert_close(out.logits, plain.logits)


def test_lora_chain_equals_its_reference_and_trains_only_the_adapters():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("qwen2"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero adapters, so the adapter's path shows in the outputs
            torch.nn.init.normal_(p, std=0.1)
    input_ids, attention_mask, thought_mask, labels = batch()
    out = chain_forward(model, input_ids, attention_mask, thought_mask, 3)
    reference = full_forward_per_thought(model, input_ids, attention_mask, thought_mask, 3)
    real = attention_mask.bool()
    torch.testing.assert_close(out.logits[real], reference[real], rtol=1e-4, atol=1e-5)
    got, expected = gradients(model, out.logits, labels), gradients(model, reference, labels)
    assert got and all("lora_" in name for name in got)
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-3, atol=1e-6, msg=name)
