"""One GRPO update on a fixed batch (tests/helpers/grpo_update.py), run in this process, compared
with another run of it: what an option must not change, and what a precision or a schedule must do."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.distributed.test_multiprocess import assert_same_update
from tests.helpers import grpo_update

TOY = str(Path(__file__).parents[1] / "helpers" / "toy_rewards.py")


def update(model_dir, out_dir, *overrides) -> dict:
    grpo_update.main(str(model_dir), str(out_dir), list(overrides))
    return torch.load(Path(out_dir) / "result.pt")


def moved(result: dict, initial: dict) -> float:
    return max((result["weights"][n] - initial[n]).abs().max().item() for n in initial)


@pytest.fixture(scope="module")
def initial(tiny_model_dir):
    return load_file(Path(tiny_model_dir) / "model.safetensors")


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_skipping_zero_advantage_completions_leaves_the_update_unchanged(
    aggregation, tiny_model_dir, tmp_path, initial
):
    """beta = 0: the all-right group and the completions whose reward equals their group's mean have no
    gradient and are skipped, but every completion still counts in the normalisers (Dr. GRPO's constant
    one included), so the update is the one computed on the whole batch."""
    settings = ("beta=0", f"loss_aggregation={aggregation}")
    skipped = update(tiny_model_dir, tmp_path / "skipped", *settings)
    whole = update(tiny_model_dir, tmp_path / "whole", *settings, "skip_zero_advantage=false")
    assert skipped["metrics"]["skipped"] > 0 and whole["metrics"]["skipped"] == 0
    assert_same_update(whole, skipped, initial)


def test_padded_and_packed_micro_batches_make_the_same_update(tiny_model_dir, tmp_path, initial):
    """The layout is an optimisation for the attention kernel at hand: one packed row per micro-batch or
    length-grouped padded rows (taken out of the batch's order), split by different budgets, and the
    head in chunks of a few positions, all give the update of the whole batch at once."""
    whole = update(tiny_model_dir, tmp_path / "whole")
    packed = update(tiny_model_dir, tmp_path / "packed", "micro_batch_layout=packed", "token_budget=40")
    padded = update(tiny_model_dir, tmp_path / "padded", "micro_batch_layout=padded", "token_budget=60")
    assert whole["metrics"]["micro_batches"] == 1
    assert packed["metrics"]["micro_batches"] > 4 and padded["metrics"]["micro_batches"] > 4
    assert_same_update(whole, packed, initial)
    assert_same_update(whole, padded, initial)


def test_bfloat16_training_moves_weights_as_float32_does(tiny_model_dir, tmp_path, initial):
    """At lr 1e-6 an AdamW step is far below half a bf16 ulp of most weights: bf16 weights updated in
    place would barely move. With float32 master weights and bf16 compute, the update is float32's."""
    settings = ("learning_rate=1e-6", "beta=0")
    full = update(tiny_model_dir, tmp_path / "float32", *settings)
    mixed = update(tiny_model_dir, tmp_path / "bfloat16", *settings, "model.dtype=bfloat16")
    full_step = torch.cat([(full["weights"][n] - initial[n]).flatten() for n in initial])
    mixed_step = torch.cat([(mixed["weights"][n] - initial[n]).flatten() for n in initial])
    assert (full_step != 0).float().mean() > 0.9
    assert (mixed_step != 0).float().mean() > 0.9 * (full_step != 0).float().mean()
    assert torch.nn.functional.cosine_similarity(full_step, mixed_step, dim=0) > 0.9
    assert mixed_step.norm() == pytest.approx(full_step.norm().item(), rel=0.1)


def test_constant_schedule_warms_up_and_the_logged_rate_is_the_one_used(tiny_model_dir, tmp_path):
    settings = ("learning_rate=1e-3", "lr_scheduler=constant", "warmup_steps=4", "max_steps=3")
    result = update(tiny_model_dir, tmp_path, *settings)  # num_iterations 2: two optimizer steps a batch
    assert [step["learning_rate"] for step in result["steps"]] == pytest.approx([0.25e-3, 0.75e-3, 1e-3])


def test_completions_a_reward_failed_on_are_left_out(tiny_model_dir, tmp_path, initial):
    """The reward raises on every completion but the worked-out right one: left out, no group has two
    completions to compare and nothing trains; scored as 0 instead, the worked one is the best of its group."""
    settings = ("beta=0", f"rewards=[{{name: '{TOY}:raises_unless_worked'}}]")
    excluded = update(tiny_model_dir, tmp_path / "excluded", *settings)
    zero = update(tiny_model_dir, tmp_path / "zero", *settings, "on_reward_failure=zero")
    assert excluded["metrics"]["excluded"] == pytest.approx(9 / 16)
    assert moved(excluded, initial) == 0
    assert zero["metrics"]["excluded"] == 0 and moved(zero, initial) > 1e-4


def test_truncated_completions_are_left_out_with_mask_truncated(tiny_model_dir, tmp_path, initial):
    masked = update(tiny_model_dir, tmp_path / "masked", "beta=0", "mask_truncated=true", "truncated=true")
    trained = update(tiny_model_dir, tmp_path / "trained", "beta=0", "truncated=true")
    assert masked["metrics"]["truncated"] == 1 and moved(masked, initial) == 0
    assert moved(trained, initial) > 1e-4


def test_accuracy_leaves_out_answers_the_verifier_cannot_read(tiny_model_dir, tmp_path):
    run = grpo_update.make_run(str(tiny_model_dir), str(tmp_path), ["accuracy_verifier=math"])
    rows = grpo_update.this_process_rows(run)
    rows[0] = {**rows[0], "answer": "\\frac{"}  # a gold answer math-verify cannot parse
    metrics = run.learn(rows, grpo_update.fixed_rollouts(run, rows))
    run.scorer.close()
    # The other groups: 2 of 4 right, 2 of 4 right, 4 of 4 right.
    assert metrics["accuracy"] == pytest.approx(8 / 12)


def test_lora_in_bfloat16_trains_float32_adapters_on_a_frozen_bfloat16_base(tiny_model_dir, tmp_path):
    run = grpo_update.make_run(
        str(tiny_model_dir),
        str(tmp_path),
        ["model.dtype=bfloat16", "lora={r: 4, alpha: 8}", "learning_rate=1e-6"],
    )
    params = dict(run.accelerator.unwrap_model(run.policy).named_parameters())
    adapters = {n: p for n, p in params.items() if p.requires_grad}
    assert adapters and all("lora_" in n and p.dtype == torch.float32 for n, p in adapters.items())
    assert all(p.dtype == torch.bfloat16 for n, p in params.items() if n not in adapters)
    before = {n: p.detach().clone() for n, p in params.items()}
    rows = grpo_update.this_process_rows(run)
    metrics = run.learn(rows, grpo_update.fixed_rollouts(run, rows))
    run.scorer.close()
    assert metrics["kl"] > 0  # the reference (adapters off) computes in the same precision as the policy
    lora_a = [n for n in adapters if "lora_A" in n]  # B starts at 0: A gets no gradient on step one
    assert all(not torch.equal(params[n], before[n]) for n in adapters if n not in lora_a)
    assert all(torch.equal(p, before[n]) for n, p in params.items() if n not in adapters)


def test_every_trainable_parameter_changes_in_one_update(tiny_model_dir, tmp_path, initial):
    result = update(tiny_model_dir, tmp_path)
    unchanged = [name for name in initial if torch.equal(result["weights"][name], initial[name])]
    assert not unchanged, unchanged
