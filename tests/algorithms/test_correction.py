import math

import torch

from reasonkit.algorithms import mismatch_by_length, truncated_importance_weights


def test_token_weights_are_the_probability_ratio_truncated_at_the_cap():
    trainer = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    sampler = torch.tensor([[math.log(0.25), math.log(0.9), math.log(0.1)]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    weights = truncated_importance_weights(trainer, sampler, mask, cap=1.5)
    assert torch.allclose(weights, torch.tensor([[1.5, 1.0, 0.0]]))  # 2.0 capped; padding stays 0


def test_sequence_weights_are_length_normalised():
    """A per-token ratio of 1.1 gives a sequence weight of 1.1 whatever the length, not 1.1 ** length."""
    ratio = math.log(1.1)
    short = truncated_importance_weights(
        torch.full((1, 2), ratio), torch.zeros(1, 2), torch.ones(1, 2), cap=2.0, level="sequence"
    )
    long = truncated_importance_weights(
        torch.full((1, 50), ratio), torch.zeros(1, 50), torch.ones(1, 50), cap=2.0, level="sequence"
    )
    assert torch.allclose(short, torch.full((1, 2), 1.1)) and torch.allclose(long, torch.full((1, 50), 1.1))


def test_mismatch_is_reported_overall_and_by_length():
    trainer = [torch.zeros(2), torch.zeros(8)]
    sampler = [torch.full((2,), 0.1), torch.full((8,), 0.3)]
    stats = mismatch_by_length(trainer, sampler, max_length=8, buckets=2)
    assert math.isclose(stats["mismatch/abs_logprob_gap"], (0.2 + 2.4) / 10, rel_tol=1e-6)
    assert math.isclose(stats["mismatch/abs_logprob_gap_len_0-4"], 0.1, rel_tol=1e-6)
    assert math.isclose(stats["mismatch/abs_logprob_gap_len_4-8"], 0.3, rel_tol=1e-6)


def test_tokens_outside_the_trainers_truncated_set_are_counted_apart_not_as_an_infinite_gap():
    trainer = [torch.tensor([-0.1, -float("inf"), -0.2, -0.3])]
    sampler = [torch.tensor([-0.2, -2.0, -0.2, -0.3])]
    stats = mismatch_by_length(trainer, sampler, max_length=4, buckets=1)
    assert math.isclose(stats["mismatch/abs_logprob_gap"], 0.1 / 3, rel_tol=1e-5)
    assert stats["mismatch/outside_trainer_support"] == 0.25
