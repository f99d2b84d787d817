import pytest
import torch

from reasonkit.grpo.logprobs import (
    completion_logprobs,
    length_grouped_batches,
    micro_batches,
    token_budget_batches,
    truncate_logits,
)
from reasonkit.models import load_model

# Where the log-prob pass has a path of its own: CUDA runs sdpa's GPU kernels and bf16 autocast on cuBLAS
# (benchmarks/gpu_check.sh runs these there); skipped, and reported so, on machines without a GPU.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def whole_vocabulary(model, sequences, temperature, truncation=None):
    """The reference: one right-padded batch through the model's own head, the full [tokens, V] logits."""
    device = model.device
    longest = max(len(p) + len(c) for p, c in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(sequences):
        ids[row, : len(p) + len(c)] = torch.tensor(p + c)
        mask[row, : len(p) + len(c)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float() / temperature
    out = {"logprobs": [], "entropy": [], "truncated": []}
    for row, (p, c) in enumerate(sequences):
        row_logits = logits[row, len(p) - 1 : len(p) + len(c) - 1]  # [C, V]
        log_softmax = row_logits.log_softmax(-1)
        target = torch.tensor(c, device=device).unsqueeze(-1)
        out["logprobs"].append(log_softmax.gather(-1, target).squeeze(-1))
        out["entropy"].append(-(log_softmax.exp() * log_softmax).sum(-1).detach())
        if truncation:
            cut = truncate_logits(row_logits.detach(), *truncation).log_softmax(-1)
            out["truncated"].append(cut.gather(-1, target).squeeze(-1))
    return out


def random_sequences(vocab, shapes, seed=0):
    torch.manual_seed(seed)
    return [
        (torch.randint(5, vocab, (n,)).tolist(), torch.randint(5, vocab, (m,)).tolist()) for n, m in shapes
    ]


SHAPES = [(12, 3), (5, 17), (1, 1), (9, 9)]


def gradients(model, logprobs, weights):
    model.zero_grad()
    (torch.cat(logprobs) * weights).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_chunked_head_equals_the_whole_vocabulary_computation(tiny_model_dir, layout, device):
    """Log-probs, entropy, truncated log-probs and every parameter's gradient match the full-logits
    computation, with the head run a few positions at a time (recomputed in the backward pass)."""
    model = load_model(str(tiny_model_dir)).to(device)
    vocab = model.config.vocab_size
    sequences = random_sequences(vocab, SHAPES)
    weights = torch.randn(sum(len(c) for _, c in sequences)).to(device)
    reference = whole_vocabulary(model, sequences, 0.7, truncation=(0.9, 20))
    expected = gradients(model, reference["logprobs"], weights)
    out = completion_logprobs(
        model, sequences, 0.7, layout=layout, with_entropy=True, truncation=(0.9, 20), chunk_logits=4 * vocab
    )
    for name, values in [
        ("logprobs", out.logprobs),
        ("entropy", out.entropy),
        ("truncated", out.truncated_logprobs),
    ]:
        for got, want, (_, c) in zip(values, reference[name], sequences, strict=True):
            assert got.shape == (len(c),)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    got = gradients(model, out.logprobs, weights)
    assert got.keys() == expected.keys() and len(got) == len(list(model.parameters()))
    # On CUDA the embedding's backward adds with atomics, in no fixed order.
    atol, rtol = (1e-6, 1e-4) if device == "cpu" else (1e-5, 1e-3)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=rtol, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_chunking_changes_nothing_in_bf16_autocast(tiny_model_dir, device):
    """Where users train: bf16 autocast over float32 weights. Chunks of 3 positions vs one chunk."""
    model = load_model(str(tiny_model_dir)).to(device)
    vocab = model.config.vocab_size
    sequences = random_sequences(vocab, SHAPES, seed=1)
    weights = torch.randn(sum(len(c) for _, c in sequences)).to(device)
    runs = []
    for chunk in [3 * vocab, 10**9]:
        with torch.autocast(device, dtype=torch.bfloat16):
            out = completion_logprobs(model, sequences, 1.0, layout="padded", chunk_logits=chunk)
        runs.append((out.logprobs, gradients(model, out.logprobs, weights)))
    (chunked, chunked_grads), (whole, whole_grads) = runs
    head = "model.embed_tokens.weight"  # tied to the LM head
    if device == "cpu":
        for a, b in zip(chunked, whole, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)  # the same ops on the same rows
        for name in whole_grads:
            if name != head:
                torch.testing.assert_close(chunked_grads[name], whole_grads[name], atol=0, rtol=0, msg=name)
    else:
        # cuBLAS picks its kernel (and summation order) by the matmul's shape: a 3-row chunk and the whole
        # batch may round a bf16 logit differently, by an ulp at most.
        for a, b in zip(chunked, whole, strict=True):
            torch.testing.assert_close(a, b, atol=5e-2, rtol=0)
        for name in whole_grads:
            difference = (chunked_grads[name] - whole_grads[name]).norm() / whole_grads[name].norm()
            assert difference < 1e-2, name
    # The head's gradient is summed over chunks in float32 instead of coming out of one bf16 matmul: it
    # differs by bf16 rounding (measured 0.3% of its norm; bf16 vs float32 training differs by 0.4-0.7%).
    difference = (chunked_grads[head] - whole_grads[head]).norm() / whole_grads[head].norm()
    assert difference < 1e-2


def test_lora_model_trains_its_adapters_through_the_chunked_head(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=4, target_modules="all-linear"))
    vocab = model.config.vocab_size
    out = completion_logprobs(model, random_sequences(vocab, SHAPES), layout="padded", chunk_logits=2 * vocab)
    torch.cat(out.logprobs).sum().backward()
    adapters = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert adapters and all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)


def test_micro_batches_hold_every_sequence_once_within_the_budget():
    lengths = [7, 30, 2, 18, 18, 5, 40, 11]
    for layout in ["packed", "padded"]:
        batches = micro_batches(lengths, 40, layout)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            cost = sum(lengths[i] for i in b) if layout == "packed" else len(b) * max(lengths[i] for i in b)
            assert cost <= 40
    # grouped by length, the padded layout pads little
    padded = length_grouped_batches(lengths, 40)
    assert [sorted(lengths[i] for i in b) for b in padded] == [[40], [30], [18, 18], [5, 7, 11], [2]]


def test_budget_never_cuts_a_sequence():
    assert token_budget_batches([10, 3, 3], budget=4) == [[0], [1], [2]]
    assert length_grouped_batches([10, 3, 3], budget=4) == [[0], [1], [2]]
    assert token_budget_batches([], budget=4) == length_grouped_batches([], budget=4) == []
