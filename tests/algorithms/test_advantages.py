import math

import pytest
import torch

from reasonkit.algorithms import group_advantages


def test_six_of_eight_correct():
    rewards = torch.tensor([1.0] * 6 + [0.0] * 2)
    # mean 0.75; population std sqrt(0.75 * 0.25) = 0.4330
    std = math.sqrt(0.75 * 0.25)
    expected = torch.tensor([0.25 / (std + 1e-4)] * 6 + [-0.75 / (std + 1e-4)] * 2)
    assert torch.allclose(group_advantages(rewards, 8), expected)
    assert torch.allclose(
        group_advantages(rewards, 8, eps=0), torch.tensor([1 / math.sqrt(3)] * 6 + [-math.sqrt(3)] * 2)
    )


def test_groups_are_normalised_separately_and_equal_groups_get_zero():
    rewards = torch.tensor([1.0, 0.0, 5.0, 5.0, 2.0, 4.0])
    adv = group_advantages(rewards, 2)
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, 0.0, 0.0, -1.0, 1.0]), atol=1e-3)
    assert adv[2] == adv[3] == 0


def test_mean_only_dr_grpo():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, scale="none")
    assert torch.allclose(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]), atol=1e-3)


def test_batch_std():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])
    batch_std = rewards.std(unbiased=False)
    adv = group_advantages(rewards, 2, scale="batch", eps=0)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, 0.0, 0.0]) / batch_std)


def test_loop_equals_vectorised():
    torch.manual_seed(0)
    rewards, G = torch.rand(6 * 5), 5
    adv = group_advantages(rewards, G)
    for g in range(6):
        group = rewards[g * G : (g + 1) * G]
        mean = sum(group.tolist()) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in group.tolist()) / G)
        for i in range(G):
            assert adv[g * G + i].item() == pytest.approx((group[i].item() - mean) / (std + 1e-4), rel=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match="G=3"):
        group_advantages(torch.ones(4), 3)


def test_invalid_completions_are_left_out_of_their_group():
    """A completion whose reward failed is treated as never sampled: the group's mean and std come from
    the others (so a failure scored as 0 cannot pull them), and its own advantage is 0."""
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 9.0])
    valid = torch.tensor([True, True, True, False, True, True, True, False])
    adv = group_advantages(rewards, 4, valid=valid, eps=0)
    std = math.sqrt(2 / 9)  # of (1, 0, 1): mean 2/3
    expected = [1 / 3 / std, -2 / 3 / std, 1 / 3 / std, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert torch.allclose(adv[:4], torch.tensor(expected[:4]))
    assert group_advantages(rewards, 4, valid=valid)[4:].eq(0).all()  # valid ones all equal: zero variance
    kept = torch.tensor([1.0, 0.0, 1.0, 2.0, 2.0, 2.0])  # the same valid rewards, batch std
    batch = group_advantages(rewards, 4, scale="batch", valid=valid, eps=0)
    assert torch.allclose(batch[:3], torch.tensor([1 / 3, -2 / 3, 1 / 3]) / kept.std(unbiased=False))
