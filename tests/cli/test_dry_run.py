"""`reasonkit run RECIPE --dry-run` on the shipped real-model recipes, with their data pointed at the
sample rows in recipes/samples (no hub here): config, data contract, rewards and objective, no weights."""

import pytest

from reasonkit.cli import main

SAMPLES = "recipes/samples"
REAL_RECIPES = {
    "recipes/qwen2.5_1.5b_math_r1.yaml": [
        f"data.train.path={SAMPLES}/math_traces.jsonl",
        f"data.rl.path={SAMPLES}/math_rl.jsonl",
        f"stages.eval.benchmarks=[{{path: {SAMPLES}/math500_like.jsonl, name: math500, format: math}}]",
    ],
    "recipes/grpo_code_qwen2.5_1.5b.yaml": [
        f"data.train.path={SAMPLES}/code_rl.jsonl",
        f"stages.eval.benchmarks=[{{path: {SAMPLES}/code_rl.jsonl, name: code, format: code}}]",
    ],
    "recipes/distill_qwen2.5_1.5b_math.yaml": [
        f"data.train.path={SAMPLES}/math_traces.jsonl",
        f"data.test.path={SAMPLES}/math_rl.jsonl",
    ],
}


@pytest.mark.parametrize("recipe", REAL_RECIPES)
def test_real_recipes_dry_run_on_sample_rows(recipe, tiny_model_dir, capsys):
    assert main(["run", "--dry-run", recipe, *REAL_RECIPES[recipe], f"model.path={tiny_model_dir}"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "dry run: all checks passed; nothing was trained" in out
    assert f"ok: model {tiny_model_dir}: a local directory" in out
    assert '"loss"' in out  # the resolved objective of each training stage is printed


def test_dry_run_reports_data_a_reward_cannot_use_and_fails(tiny_model_dir, capsys):
    args = [
        "run",
        "--dry-run",
        "recipes/qwen2.5_1.5b_math_r1.yaml",
        *REAL_RECIPES["recipes/qwen2.5_1.5b_math_r1.yaml"],
    ]
    args[-2] = f"data.rl.path={SAMPLES}/code_rl.jsonl"  # prompts without gold answers
    args += ["data.rl.prompt_column=prompt", f"model.path={tiny_model_dir}"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAILED: reward 'math' needs dataset column(s) ['answer']" in out
    assert "1 check(s) failed" in out
