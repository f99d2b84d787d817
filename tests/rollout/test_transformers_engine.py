import pytest
import torch
from peft import get_peft_model
from transformers import GenerationConfig

from reasonkit.config import LoRASettings
from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.models import load_model, lora_config
from reasonkit.rollout import SamplingSettings, TransformersEngine
from reasonkit.rollout.base import end_at_first_stop
from tests.rollout.conftest import PROMPTS, plain_greedy


def test_rollouts_carry_ids_logprobs_text_and_truncation(tiny_model_dir, tiny_tokenizer):
    model = load_model(str(tiny_model_dir))
    engine = TransformersEngine(model, tiny_tokenizer, batch_size=2)
    prompts = [
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
        )
        for q in ["What is 12 * 34?", "What is 5 * 6?", "Hi"]
    ]
    sampling = SamplingSettings(n=3, temperature=0.7, top_p=1.0, max_new_tokens=6, seed=0)
    rollouts = engine.generate(prompts, sampling, with_logprobs=True)
    assert [r.prompt_index for r in rollouts] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for r in rollouts:
        assert r.prompt_ids == tiny_tokenizer(prompts[r.prompt_index], add_special_tokens=False)["input_ids"]
        assert len(r.rollout_logprobs) == len(r.completion_ids) <= 6
        if r.truncated:  # cut at max_new_tokens, no stop token in it
            assert len(r.completion_ids) == 6 and tiny_tokenizer.eos_token_id not in r.completion_ids
        else:  # ends at its first stop token, which the text leaves out
            assert r.completion_ids.index(tiny_tokenizer.eos_token_id) == len(r.completion_ids) - 1
            assert tiny_tokenizer.eos_token not in r.text
    # The engine's sampling log-probs are the trainer's log-probs of the same tokens at that temperature.
    trainer_side = completion_logprobs(
        model, [(r.prompt_ids, r.completion_ids) for r in rollouts], temperature=0.7
    )
    for r, lp in zip(rollouts, trainer_side.logprobs):
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-4)


def test_same_seed_same_samples_and_greedy_is_deterministic(tiny_model_dir, tiny_tokenizer):
    engine = TransformersEngine(load_model(str(tiny_model_dir)), tiny_tokenizer)
    prompt = ["<|user|>What is 12 * 34?<|end|><|assistant|>"]
    sampled = [
        engine.generate(prompt, SamplingSettings(n=4, temperature=1.0, max_new_tokens=5, seed=1))
        for _ in range(2)
    ]
    assert [r.completion_ids for r in sampled[0]] == [r.completion_ids for r in sampled[1]]
    greedy = engine.generate(prompt, SamplingSettings(n=1, temperature=0.0, max_new_tokens=5))
    assert (
        greedy[0].completion_ids
        == engine.generate(prompt, SamplingSettings(n=1, temperature=0.0, max_new_tokens=5))[0].completion_ids
    )


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_samples_the_recipes_settings_not_the_checkpoints(opinionated_model_dir, tiny_tokenizer, lora):
    # The checkpoint's repetition_penalty, no_repeat_ngram_size and min_new_tokens must not apply: what
    # was sampled from is the plain temperature-scaled distribution the trainer computes.
    model = load_model(str(opinionated_model_dir))
    if lora:  # peft's generate hands the base model a generation config of its own
        model = get_peft_model(model, lora_config(LoRASettings(r=4)))
    engine = TransformersEngine(model, tiny_tokenizer)
    sampling = SamplingSettings(n=4, temperature=0.7, max_new_tokens=8, seed=0)
    rollouts = engine.generate(PROMPTS, sampling, with_logprobs=True)
    trainer = completion_logprobs(
        model, [(r.prompt_ids, r.completion_ids) for r in rollouts], temperature=0.7
    )
    for r, lp in zip(rollouts, trainer.logprobs):
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-4), (r.rollout_logprobs, lp)
    assert model.generation_config.repetition_penalty == 1.3  # the model's own config is left as loaded


def test_stops_at_every_eos_id_of_the_checkpoint(opinionated_model_dir, tiny_tokenizer):
    model = load_model(str(opinionated_model_dir))
    stop_ids = GenerationConfig.from_pretrained(opinionated_model_dir).eos_token_id  # [EOS, extra]
    engine = TransformersEngine(model, tiny_tokenizer)
    assert engine.stop_token_ids == stop_ids
    rollouts = engine.generate(PROMPTS, SamplingSettings(temperature=0, max_new_tokens=10))
    for r, prompt in zip(rollouts, PROMPTS):
        plain = plain_greedy(model, tiny_tokenizer, prompt, steps=10)
        assert (r.completion_ids, r.truncated) == end_at_first_stop(plain, stop_ids)
    first = rollouts[0]  # the extra EOS id is what plain greedy decoding of this prompt emits third
    assert first.completion_ids[-1] == stop_ids[1] and len(first.completion_ids) <= 3 and not first.truncated
    assert first.text == tiny_tokenizer.decode(first.completion_ids[:-1], skip_special_tokens=True)


def test_batch_size_counts_completions_so_memory_does_not_grow_with_n(tiny_model_dir, tiny_tokenizer):
    """generation_batch_size bounds the rows of one call (prompts x n), whatever n is; each prompt is run
    once, its n completions decoded from copies of its cache."""
    model = load_model(str(tiny_model_dir))
    prompt_rows, decode_rows = [], []

    def count_rows(module, args, kwargs):
        if kwargs["input_ids"].shape[1] > 1:  # a call's first forward holds its prompts, later ones a token
            prompt_rows.append(kwargs["input_ids"].shape[0])
            decode_rows.append(0)
        else:
            decode_rows[-1] = max(decode_rows[-1], kwargs["input_ids"].shape[0])

    model.register_forward_pre_hook(count_rows, with_kwargs=True)
    engine = TransformersEngine(model, tiny_tokenizer, batch_size=8)
    prompts = [f"<|user|>What is {a} * 3?<|end|><|assistant|>" for a in range(5)]
    rollouts = engine.generate(prompts, SamplingSettings(n=4, temperature=1.0, max_new_tokens=3, seed=0))
    assert prompt_rows == [2, 2, 1]  # 2 prompts x 4 per call
    assert max(decode_rows[:3]) <= 8
    assert [r.prompt_index for r in rollouts] == [i for i in range(5) for _ in range(4)]
    engine.generate(prompts, SamplingSettings(n=16, temperature=1.0, max_new_tokens=3, seed=0))
    assert prompt_rows[3:] == [1] * 5 and max(decode_rows[3:]) <= 16  # never fewer than one prompt's n


@pytest.mark.parametrize("temperature", [0.0, 0.9], ids=["greedy", "sampled"])
def test_rows_leave_the_batch_when_they_stop_and_the_rest_decode_as_if_alone(
    tiny_model_dir, tiny_tokenizer, temperature
):
    """Rows of different prompt lengths stop at different steps; each one that stops leaves the batch
    (and the KV cache), and what the others sample is unchanged: greedy rows equal plain one-row greedy
    decoding, sampled rows' log-probs equal the trainer's recomputation without any cache."""
    model = load_model(str(tiny_model_dir))
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights than the random init's, so that greedy continuations vary
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.normal_(std=0.5)
    prompts = [f"<|user|>{'Think hard. ' * k}What is {k} * 7?<|end|><|assistant|>" for k in range(6)]
    engine = TransformersEngine(model, tiny_tokenizer)
    # Stop tokens that the rows reach at different points: the tokens of the rows' plain continuations.
    continuations = [plain_greedy(model, tiny_tokenizer, p, steps=12) for p in prompts]
    engine.stop_token_ids = sorted({c[k * 2] for k, c in enumerate(continuations[:5])})
    rows_per_forward = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_forward.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    sampling = SamplingSettings(n=2, temperature=temperature, max_new_tokens=12, seed=0)
    rollouts = engine.generate(prompts, sampling, with_logprobs=True)

    lengths = [len(r.completion_ids) for r in rollouts]
    assert len(set(lengths)) >= 3 and min(lengths) < 12  # rows stopped at several different steps
    # the 6 prompts once, then their 12 completions, fewer as rows finish
    assert rows_per_forward[0] == 6 and rows_per_forward[1] <= 12
    assert rows_per_forward[1:] == sorted(rows_per_forward[1:], reverse=True)
    assert rows_per_forward[-1] < 12  # finished rows left the batch
    if temperature == 0:
        for r in rollouts:
            assert (r.completion_ids, r.truncated) == end_at_first_stop(
                continuations[r.prompt_index], engine.stop_token_ids
            )
    # greedy log-probs are those of the untempered distribution, as vLLM reports them
    trainer = completion_logprobs(
        model, [(r.prompt_ids, r.completion_ids) for r in rollouts], temperature=temperature or 1.0
    )
    for r, lp in zip(rollouts, trainer.logprobs):
        assert torch.allclose(torch.tensor(r.rollout_logprobs), lp, atol=1e-4)


def test_sampling_draws_each_token_at_its_probability_and_never_a_cut_one():
    from reasonkit.grpo.logprobs import truncate_logits
    from reasonkit.rollout.transformers_engine import sample

    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    logits = truncate_logits(probs.log().repeat(40_000, 1), top_k=4)  # the last token cut: -inf
    drawn = torch.bincount(sample(logits.log_softmax(-1)), minlength=5) / 40_000
    expected = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.0]) / 0.97
    assert drawn[4] == 0
    assert torch.allclose(drawn, expected, atol=0.01), drawn
