import doctest

import torch

import reasonkit.grpo.packing as packing
from reasonkit.grpo.packing import packed_logprobs, token_budget_batches
from reasonkit.models import load_model


def padded_logprobs(model, sequences, temperature):
    """The reference: a right-padded batch with an attention mask."""
    longest = max(len(p) + len(c) for p, c in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(sequences):
        ids[row, : len(p) + len(c)] = torch.tensor(p + c)
        mask[row, : len(p) + len(c)] = 1
    logprobs = torch.log_softmax(
        model(input_ids=ids, attention_mask=mask).logits.float() / temperature, dim=-1
    )
    return [
        logprobs[row, len(p) - 1 : len(p) + len(c) - 1].gather(-1, torch.tensor(c).unsqueeze(-1)).squeeze(-1)
        for row, (p, c) in enumerate(sequences)
    ]


def test_doctests():
    assert doctest.testmod(packing).failed == 0


def test_packed_equals_padded(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    torch.manual_seed(0)
    sequences = [
        (torch.randint(5, 200, (n,)).tolist(), torch.randint(5, 200, (m,)).tolist())
        for n, m in [(12, 3), (5, 17), (1, 1), (9, 9)]
    ]
    packed = packed_logprobs(model, sequences, temperature=0.7, with_entropy=True).logprobs
    padded = padded_logprobs(model, sequences, temperature=0.7)
    for a, b, (_, c) in zip(packed, padded, sequences):
        assert a.shape == (len(c),)
        assert torch.allclose(a, b, atol=1e-5)


def test_gradients_flow_through_packed_logprobs(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    out = packed_logprobs(model, [([5, 6, 7], [8, 9]), ([10], [11, 12, 13])])
    torch.cat(out.logprobs).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_budget_never_cuts_a_sequence():
    assert token_budget_batches([10, 3, 3], budget=4) == [[0], [1], [2]]
    assert token_budget_batches([], budget=4) == []
