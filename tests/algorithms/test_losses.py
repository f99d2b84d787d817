import math

import pytest
import torch

from reasonkit.algorithms import GRPOLossSettings, aggregate_loss, clipped_surrogate, grpo_loss, kl_penalty


def surrogate(ratio: float, advantage: float, low=0.2, high=0.2):
    policy = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, clipped = clipped_surrogate(policy, torch.zeros(1, 1), torch.tensor([advantage]), low, high)
    loss.sum().backward()
    return loss.item(), clipped.item(), policy.grad.item()


@pytest.mark.parametrize(
    "ratio, advantage, clipped",
    [
        (1.5, 1.0, True),  # A > 0, ratio above 1 + ε: clipped, no gradient
        (1.1, 1.0, False),  # A > 0 inside the range
        (0.5, 1.0, False),  # A > 0 below 1 - ε: unclipped (pessimistic bound keeps the gradient)
        (0.5, -1.0, True),  # A < 0, ratio below 1 - ε: clipped
        (0.9, -1.0, False),  # A < 0 inside
        (1.5, -1.0, False),  # A < 0 above 1 + ε: unclipped
    ],
)
def test_clip_boundaries_both_sides(ratio, advantage, clipped):
    loss, was_clipped, grad = surrogate(ratio, advantage)
    expected = -min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert bool(was_clipped) is clipped
    assert (grad == 0) is clipped
    if not clipped:  # d/dlogp of -ratio * A is -ratio * A
        assert grad == pytest.approx(-ratio * advantage, rel=1e-5)


def test_clip_higher():
    assert surrogate(1.25, 1.0, low=0.2, high=0.28)[1] is False
    assert surrogate(1.25, 1.0, low=0.2, high=0.2)[1] is True
    assert surrogate(0.75, -1.0, low=0.2, high=0.28)[1] is True


def test_kl_estimators_hand_computed():
    policy, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    d = math.log(0.25) - math.log(0.5)  # ref - policy
    assert kl_penalty(policy, ref, "k2").item() == pytest.approx(0.5 * d * d)
    assert kl_penalty(policy, ref, "k3").item() == pytest.approx(math.exp(d) - d - 1)
    assert kl_penalty(ref, ref).item() == 0


def test_kl_penalty_gradients_are_those_of_the_documented_kl():
    """With the sampled tokens held fixed (as in the loss), the expected gradient of k2 is that of
    KL(π‖π_ref) and that of k3 is that of KL(π_ref‖π); both checked exactly by summing over the vocabulary."""
    logits = torch.tensor([0.3, -0.2, 1.1], requires_grad=True)
    ref = torch.tensor([0.5, 0.3, 0.2]).log()
    for estimator, kl in [
        ("k2", lambda lp: (lp.exp() * (lp - ref)).sum()),
        ("k3", lambda lp: (ref.exp() * (ref - lp)).sum()),
    ]:
        policy = logits.log_softmax(-1)
        # E_{x~π}[∇ estimate(x)] with π's probabilities detached: the samples are not differentiated
        expected_gradient = torch.autograd.grad(
            (policy.exp().detach() * kl_penalty(policy, ref, estimator)).sum(), logits
        )[0]
        true_gradient = torch.autograd.grad(kl(logits.log_softmax(-1)), logits)[0]
        assert torch.allclose(expected_gradient, true_gradient, atol=1e-6), estimator


def test_k3_is_unbiased_for_the_true_kl():
    torch.manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.3, 0.4, 0.3])
    samples = torch.multinomial(p, 200_000, replacement=True)
    estimate = kl_penalty(p.log()[samples], q.log()[samples], "k3").mean().item()
    assert estimate == pytest.approx((p * (p / q).log()).sum().item(), abs=5e-3)


def test_gradients_numerically():
    torch.manual_seed(0)
    policy = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    old, ref = (
        torch.randn(3, 4, dtype=torch.float64) * 0.1 + policy.detach(),
        torch.randn(3, 4, dtype=torch.float64),
    )
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])

    def objective(p):
        per_token, _ = clipped_surrogate(p, old, adv, 0.2, 0.28)
        return aggregate_loss(per_token + 0.05 * kl_penalty(p, ref), mask, "sequence_mean")

    assert torch.autograd.gradcheck(objective, (policy,))


def test_aggregations_hand_computed():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate_loss(loss, mask, "sequence_mean").item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate_loss(loss, mask, "token_mean").item() == pytest.approx(10.0 / 4)
    assert aggregate_loss(loss, mask, "constant", max_length=5).item() == pytest.approx(10.0 / (2 * 5))


@pytest.mark.parametrize("mode", ["sequence_mean", "token_mean", "constant"])
def test_micro_batches_add_up_to_the_full_batch(mode):
    torch.manual_seed(1)
    loss = torch.rand(5, 6)
    mask = (torch.rand(5, 6) > 0.3).int()
    mask[:, 0] = 1
    full = aggregate_loss(loss, mask, mode, max_length=8)
    counts = {"num_sequences": 5, "num_tokens": int(mask.sum()), "max_length": 8}
    parts = aggregate_loss(loss[:2], mask[:2], mode, **counts) + aggregate_loss(
        loss[2:], mask[2:], mode, **counts
    )
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_loop_equals_vectorised_sequence_mean():
    torch.manual_seed(2)
    loss, mask = torch.rand(4, 7), (torch.rand(4, 7) > 0.4).int()
    mask[:, 0] = 1
    by_loop = (
        sum(
            sum(x * m for x, m in zip(row.tolist(), mrow.tolist())) / sum(mrow.tolist())
            for row, mrow in zip(loss, mask)
        )
        / 4
    )
    assert aggregate_loss(loss, mask, "sequence_mean").item() == pytest.approx(by_loop, rel=1e-6)


def test_grpo_loss_hand_computed_with_importance_weights_and_kl():
    log = math.log
    policy = torch.tensor([[log(0.5), log(0.2)], [log(0.3), 0.0]], requires_grad=True)
    old = torch.tensor([[log(0.4), log(0.2)], [log(0.5), 0.0]])  # ratios 1.25, 1.0 | 0.6
    ref = torch.tensor([[log(0.25), log(0.2)], [log(0.3), 0.0]])
    weights = torch.tensor([[2.0, 0.5], [1.0, 0.0]])  # min(π_trainer / π_sampler, cap)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    settings = GRPOLossSettings(epsilon_low=0.2, epsilon_high=0.2, beta=0.1, kl_estimator="k3")
    out = grpo_loss(
        policy,
        mask,
        torch.tensor([1.0, -0.5]),
        settings,
        old_logprobs=old,
        ref_logprobs=ref,
        importance_weights=weights,
    )
    # token (0,0): ratio 1.25 clipped to 1.2, A = 1, weight 2: -2.4; k3 of log(0.25/0.5): 0.5 - log 0.5 - 1
    # token (0,1): ratio 1, weight 0.5: -0.5, no KL; token (1,0): ratio 0.6 clipped to 0.8, A = -0.5: 0.4
    k3 = 0.5 - log(0.5) - 1
    sequence_means = [(-2.4 + 0.1 * k3 - 0.5) / 2, 0.4]
    assert out.loss.item() == pytest.approx(sum(sequence_means) / 2, rel=1e-6)
    assert out.kl_sum.item() == pytest.approx(k3, rel=1e-6)
    assert out.clipped_tokens.item() == 2
    out.loss.backward()
    # (0,0): the clip removes the surrogate's gradient, the KL's is β(1 - π_ref/π) = 0.1 * 0.5;
    # (0,1): -ratio * A * weight = -0.5; each divided by the sequence's 2 tokens and the 2 sequences.
    assert policy.grad[0].tolist() == pytest.approx([0.1 * 0.5 / 4, -0.5 / 4], rel=1e-5)
    assert policy.grad[1, 0].item() == 0.0  # clipped, and no KL (π = π_ref)
