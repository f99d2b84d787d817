import pytest
import torch

from reasonkit.trm.model import TRM, cell_losses, parameter_count, stablemax_cross_entropy
from reasonkit.trm.schema import TRMNetwork

L, V = 16, 5  # a 4x4 grid: tokens 0 (blank) .. 4


def make(**network) -> TRM:
    torch.manual_seed(0)
    return TRM(TRMNetwork(hidden_size=16, **network), V, L, halting=True)


def puzzles(batch: int = 3) -> torch.Tensor:
    return torch.randint(0, V, (batch, L), generator=torch.Generator().manual_seed(1))


def test_one_supervision_step_runs_n_latent_and_one_answer_update_per_recursion():
    model = make(latent_steps=3, recursions=2)
    seen = []
    out = model(
        puzzles(), *model.initial_state(3), watch=lambda kind, t, before, after: seen.append((kind, t))
    )
    assert seen == [("z", 0)] * 3 + [("y", 0)] + [("z", 1)] * 3 + [("y", 1)]
    assert out.logits.shape == (3, L, V) and out.halt_logits.shape == (3,)
    assert not out.y.requires_grad and not out.z.requires_grad  # carried detached
    assert model.effective_depth() == 2 * 4 * 2


def test_only_the_last_recursion_is_differentiated():
    """The first T-1 recursions run without gradients: the gradient with T = 2 equals that of T = 1 started
    from the states the first recursion produced."""
    model = make(latent_steps=2, recursions=2)
    x = puzzles()
    y0, z0 = model.initial_state(3)
    model(x, y0, z0).logits.square().sum().backward()
    full = [p.grad for p in model.parameters()]
    model.zero_grad()
    with torch.no_grad():
        y1, z1 = model.latent_recursion(model.embed(x), y0, z0, 0)
    one = make(latent_steps=2, recursions=1)
    one.load_state_dict(model.state_dict())
    one(x, y1, z1).logits.square().sum().backward()
    for a, b in zip(full, [p.grad for p in one.parameters()]):
        assert (a is None) == (b is None)  # the Q head is not in this loss
        if a is not None:
            torch.testing.assert_close(a, b)


def test_one_step_gradient_differs_from_full_and_reaches_every_weight():
    grads = {}
    for gradient in ("full", "one_step"):
        model = make(latent_steps=3, recursions=1, gradient=gradient)
        model(puzzles(), *model.initial_state(3)).logits.square().sum().backward()
        grads[gradient] = model.f_latent.blocks[0].mlp.down.weight.grad.clone()
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0
            for n, p in model.named_parameters()
            if "q_head" not in n
        )
    assert not torch.allclose(grads["full"], grads["one_step"])


def test_forward_is_the_same_with_and_without_gradients():
    model = make()
    x, (y, z) = puzzles(), model.initial_state(3)
    with torch.no_grad():
        evaluated = model(x, y, z).logits
    torch.testing.assert_close(model(x, y, z).logits, evaluated)


def test_ablation_sizes():
    shared = parameter_count(make())
    separate = parameter_count(make(separate_networks=True))
    unshared = parameter_count(make(mode="unshared", latent_steps=3))
    f = parameter_count(make().f_latent)
    assert separate == shared + f
    q_head = parameter_count(make().q_head)  # baselines have no halting head
    assert unshared == shared - q_head + 3 * f  # n + 1 = 4 networks instead of one
    assert len(make(num_layers=4).f_latent.blocks) == 4
    assert "f_answer_own.blocks.0.mlp.down.weight" in make(separate_networks=True).state_dict()


def test_single_pass_applies_the_network_once():
    model = make(mode="single_pass")
    x, (y, z) = puzzles(), model.initial_state(3)
    expected = model.head(model.f_latent(model.embed(x) + y + z))
    torch.testing.assert_close(model(x, y, z).logits, expected)
    assert model.q_head is None  # no halting without supervision steps


@pytest.mark.parametrize("block", ["mlp_t", "attention"])
def test_blocks_mix_information_across_cells(block):
    model = make(block=block, num_heads=2)
    x = puzzles(1)
    changed = x.clone()
    changed[0, 0] = (changed[0, 0] + 1) % V
    y, z = model.initial_state(1)
    delta = (model(x, y, z).logits - model(changed, y, z).logits).abs().sum(-1)[0]
    assert (delta[1:] > 0).all()  # every other cell's answer depends on cell 0


def test_stablemax_cross_entropy_by_hand():
    logits = torch.tensor([[[2.0, -1.0, 0.0]]])
    # s = (3, 1/2, 1): p(label 0) = 3 / 4.5
    expected = -torch.log(torch.tensor(3 / 4.5))
    torch.testing.assert_close(stablemax_cross_entropy(logits, torch.tensor([[0]])), expected.view(1, 1))
    softmax = cell_losses(logits, torch.tensor([[0]]), "softmax")
    torch.testing.assert_close(softmax, -torch.log_softmax(logits, -1)[..., 0])
