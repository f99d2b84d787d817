"""GRPO's log-probs for a latent model: the trainer's, through the chain of thoughts, are the sampler's
(the latent engine's), and their gradient reaches the weights through the thoughts."""

import pytest
import torch

import reasonkit.latent.thoughts as thoughts_module
from reasonkit.grpo.logprobs import completion_logprobs
from reasonkit.latent.engine import LatentEngine, LatentSettings
from reasonkit.latent.logprobs import latent_completion_logprobs
from reasonkit.latent.thoughts import add_thought_tokens
from reasonkit.models import load_model, load_tokenizer
from reasonkit.rollout import SamplingSettings

PROMPTS = ["What is 12 * 34?<think>", "7 * 8<think>", "What is 91 * 5 plus nothing?<think>"]


@pytest.fixture
def latent_model(tiny_model_dir):
    """The tiny model given the thought tokens, as the latent stage leaves it."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    add_thought_tokens(tokenizer, model)
    return model, tokenizer


@pytest.mark.parametrize(
    "settings",
    [
        LatentSettings(thoughts=3),
        LatentSettings(thoughts=2, normalise=True),
        LatentSettings(3, feedback=False),
    ],
    ids=["continuous", "normalised", "pause"],
)
def test_the_trainers_logprobs_of_a_latent_rollout_are_the_samplers(latent_model, settings):
    model, tokenizer = latent_model
    engine = LatentEngine(model, tokenizer, settings)
    sampling = SamplingSettings(n=3, temperature=0.9, top_k=20, max_new_tokens=12, seed=1)
    rollouts = engine.generate(PROMPTS, sampling, with_logprobs=True)
    # completions of several lengths (a prefix's log-probs are the prefix of the whole's): right padding
    lengths = [len(r.completion_ids) - i % 4 for i, r in enumerate(rollouts)]
    sequences = [(r.prompt_ids, r.completion_ids[:n]) for r, n in zip(rollouts, lengths)]
    tokens = engine.tokens
    for r in rollouts:  # what the trainer re-runs: the prompt, <|bot|>, the placeholders, <|eot|>
        assert r.prompt_ids[-settings.thoughts - 2 :] == [
            tokens.bot,
            *[tokens.latent] * settings.thoughts,
            tokens.eot,
        ]
    out = latent_completion_logprobs(
        model, sequences, sampling.temperature, settings=settings, truncation=(1.0, 20), with_entropy=True
    )
    for r, n, truncated, entropy in zip(rollouts, lengths, out.truncated_logprobs, out.entropy):
        torch.testing.assert_close(truncated, torch.tensor(r.rollout_logprobs[:n]), rtol=0, atol=1e-4)
        assert entropy.shape == truncated.shape and (entropy > 0).all()
    # and the prompts' lengths differ: the left padding that aligns <|bot|> changes nothing
    assert len({len(p) for p, _ in sequences}) == len(PROMPTS)


def test_without_its_thoughts_the_same_tokens_have_other_logprobs(latent_model):
    """What the test above would miss if the trainer read the placeholders as tokens."""
    model, tokenizer = latent_model
    settings = LatentSettings(thoughts=3)
    rollouts = LatentEngine(model, tokenizer, settings).generate(
        PROMPTS, SamplingSettings(n=2, max_new_tokens=8, seed=1)
    )
    sequences = [(r.prompt_ids, r.completion_ids) for r in rollouts]
    chained = torch.cat(latent_completion_logprobs(model, sequences, settings=settings).logprobs)
    as_tokens = torch.cat(completion_logprobs(model, sequences, layout="padded").logprobs)
    assert (chained - as_tokens).abs().max() > 0.1


def test_the_gradient_reaches_the_weights_through_the_thoughts(latent_model, monkeypatch):
    """The same log-probs with every fed-back state detached (the one change: ``chain_forward`` feeds
    ``normalise_thought``'s output back) give another gradient: a share of it flows through the thoughts."""
    model, tokenizer = latent_model
    settings = LatentSettings(thoughts=4)
    rollouts = LatentEngine(model, tokenizer, settings).generate(
        PROMPTS, SamplingSettings(n=2, max_new_tokens=8, seed=1)
    )
    sequences = [(r.prompt_ids, r.completion_ids) for r in rollouts]

    def gradient() -> dict[str, torch.Tensor]:
        model.zero_grad()
        logprobs = latent_completion_logprobs(model, sequences, settings=settings).logprobs
        torch.cat(logprobs).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    through = gradient()
    detach = thoughts_module.normalise_thought
    monkeypatch.setattr(
        thoughts_module, "normalise_thought", lambda hidden, scale: detach(hidden, scale).detach()
    )
    cut = gradient()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"):
        assert (through[name] - cut[name]).norm() > 0.05 * through[name].norm(), name
