"""The recurrent-depth model: a transformers model that saves and reloads, draws r per training forward with
gradients through the last iterations only, and at test time runs a fixed r deterministically or stops a
token once its distribution stops moving; the engine generates what `generate` does."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonkit.models import build_tiny_model
from reasonkit.recurrent.depth import sample_depth
from reasonkit.recurrent.engine import Depth, RecurrentEngine
from reasonkit.recurrent.schema import RecurrentLayout
from reasonkit.rollout import EngineError, SamplingSettings, TransformersEngine

SIZES = {"hidden_size": 64, "num_heads": 2, "intermediate_size": 128}
LAYOUT = RecurrentLayout(prelude_layers=1, core_layers=2, coda_layers=1, mean_recurrence=4, backprop_depth=2)


@pytest.fixture()
def model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer, recurrent=LAYOUT, seed=3, **SIZES)


def prompts(tokenizer, texts=("What is 12 * 34?", "What is 7 * 8?")):
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                              add_generation_prompt=True) for t in texts]  # fmt: skip
    return tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)


def test_it_saves_and_reloads_through_the_auto_classes(model, tiny_tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model) and reloaded.config.core_layers == 2
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight  # tied, as saved
    assert AutoTokenizer.from_pretrained(tmp_path).get_vocab() == tiny_tokenizer.get_vocab()
    batch = prompts(tiny_tokenizer)
    model.eval()
    torch.testing.assert_close(reloaded(**batch, recurrences=3).logits, model(**batch, recurrences=3).logits)


def test_each_training_forward_draws_r_and_backpropagates_through_the_last_iterations_only(model):
    calls = []  # whether the gradient was on at each call of the shared block's first layer
    model.model.core[0].register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    ids = torch.randint(10, 100, (2, 6))
    model.train()
    draws = []
    for draw in range(6):
        calls.clear()
        out = model(input_ids=ids, labels=ids)
        generator = torch.Generator().manual_seed((3 << 32) + draw)  # recurrence_seed is the model's seed
        without_grad, with_grad = sample_depth(4, 2, generator)
        assert calls == [False] * without_grad + [True] * with_grad
        assert (out.recurrence_steps == without_grad + with_grad).all()
        draws.append(without_grad + with_grad)
    assert len(set(draws)) > 1 and int(model.model.draws) == 6
    out.loss.backward()
    for name, parameter in model.named_parameters():  # every part learns, the prelude through the injection
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_gradient_is_that_of_the_last_iterations_from_a_detached_state(model):
    """The same loss built by hand: the first iterations' result detached, then the last ones."""
    ids = torch.randint(10, 100, (2, 5))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    generator = torch.Generator().manual_seed(3 << 32)  # the first draw again
    without_grad, with_grad = sample_depth(4, 2, generator)
    backbone = model.model
    injected, layer_args = backbone.prelude_pass(ids, None, None, None)
    state = (torch.randn(injected.shape, generator=generator) * model.config.state_std).to(injected)
    for _ in range(without_grad):
        state = backbone.core_step(state, injected, layer_args)
    state = state.detach()
    for _ in range(with_grad):
        state = backbone.core_step(state, injected, layer_args)
    logits = model.lm_head(backbone.coda_pass(state, layer_args))
    model.loss_function(logits, ids, model.config.vocab_size).backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(got[name], parameter.grad, msg=name)


def test_a_fixed_test_time_depth_is_deterministic_and_deeper_is_different(model, tiny_tokenizer):
    batch = prompts(tiny_tokenizer)
    model.eval()
    with torch.no_grad():
        first, again = model(**batch, recurrences=16).logits, model(**batch, recurrences=16).logits
        shallow = model(**batch, recurrences=1).logits
    assert torch.equal(first, again)
    assert not torch.allclose(first, shallow)
    assert int(model.model.draws) == 0  # evaluation draws nothing


def test_the_kl_exit_stops_a_converged_state_and_not_a_moving_one(model, tiny_tokenizer):
    batch = prompts(tiny_tokenizer)
    model.eval()
    with torch.no_grad():
        moving = model(**batch, recurrences=6, exit_kl=0.0)  # no KL is below 0: every token runs all 6
        assert (moving.recurrence_steps == 6).all()
        # The state's half of the adapter zeroed: every iteration computes the same state from the input
        # alone, so the distribution stops moving at the second iteration.
        model.model.adapter.weight[:, : model.config.hidden_size] = 0
        converged = model(**batch, recurrences=6, exit_kl=1e-6)
        fixed = model(**batch, recurrences=6)
    real = batch["attention_mask"].bool()
    assert (converged.recurrence_steps[real] == 2).all()
    torch.testing.assert_close(converged.logits[real], fixed.logits[real])


def test_the_engine_generates_what_generate_does_and_records_the_iterations(model, tiny_tokenizer):
    model.eval()
    texts = ["What is 12 * 34?", "What is 7 * 8?", "What is 99 * 99?"]
    sampling = SamplingSettings(temperature=0.0, max_new_tokens=6)
    rendered = [tiny_tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                   add_generation_prompt=True) for t in texts]  # fmt: skip
    rollouts = RecurrentEngine(model, tiny_tokenizer, depth=Depth(3)).generate(rendered, sampling)
    for text, rollout in zip(rendered, rollouts):
        ids = tiny_tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        expected = model.generate(ids, max_new_tokens=6, do_sample=False, recurrences=3)[0, ids.shape[1] :]
        assert rollout.completion_ids == expected.tolist()[: len(rollout.completion_ids)]
        assert rollout.recurrence_steps == [3] * len(rollout.completion_ids)
        assert rollout.prompt_ids == ids[0].tolist()
    # prompts as token ids (the tool loop's turns) give the same rollouts as the texts they encode
    as_ids = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in rendered]
    from_ids = RecurrentEngine(model, tiny_tokenizer, depth=Depth(3)).generate(as_ids, sampling)
    assert [r.completion_ids for r in from_ids] == [r.completion_ids for r in rollouts]
    adaptive = RecurrentEngine(model, tiny_tokenizer, depth=Depth(5, exit_kl=1e-2)).generate(
        rendered, sampling
    )
    assert all(1 <= s <= 5 for r in adaptive for s in r.recurrence_steps)


def test_the_cached_transformers_engine_refuses_it_rather_than_drop_the_context(model, tiny_tokenizer):
    engine = TransformersEngine(model, tiny_tokenizer)
    with pytest.raises(EngineError, match="returns no KV cache"):
        engine.generate(["What is 2 * 3?"], SamplingSettings(temperature=0.0, max_new_tokens=3))
