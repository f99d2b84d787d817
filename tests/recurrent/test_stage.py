"""A recurrent-depth tiny model through the pipeline: trained by the sft stage (and resumed exactly),
evaluated at several test-time depths with the adaptive exit, its diagnostics; `reasonkit eval` on it; and
what `validate` refuses."""

import json

import pytest
import torch
from safetensors.torch import load_file

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.helpers.killed_run import killed_after_first_checkpoint

RECURRENT_TINY = {
    "hidden_size": 64,
    "num_heads": 2,
    "intermediate_size": 128,
    "recurrent": {"prelude_layers": 1, "core_layers": 1, "coda_layers": 1, "mean_recurrence": 2},
}
DATA = {"task": "arithmetic", "arithmetic": {"test_size": 12, "train_size": 64}}
STAGES = {
    "sft": {"traces": False, "learning_rate": 3e-3, "batch_size": 8, "max_steps": 6, "max_length": 64,
            "logging_steps": 1, "save_steps": 3},
    "eval": {"type": "eval", "max_new_tokens": 8, "engine": "transformers", "recurrences": [1, 3],
             "exit_kl": 1e-3},
}  # fmt: skip


def recipe(output_dir, stages=STAGES, tiny=RECURRENT_TINY):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "report_to": ["jsonl"],
            "model": {"tiny": tiny},
            "data": DATA,
            "stages": stages,
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("recurrent") / "run"
    return out, run_recipe(recipe(out))


def test_the_sft_stage_trains_every_part_and_the_eval_stage_reports_each_depth(trained):
    out, summary = trained
    base = load_file(out / "base_model" / "model.safetensors")
    final = load_file(out / "sft" / "model" / "model.safetensors")
    assert int(final["model.draws"]) == 6  # one draw of r per training step
    unchanged = [
        name for name, weight in base.items() if name != "model.draws" and torch.equal(weight, final[name])
    ]
    assert unchanged == []
    result = summary["stages"]["eval"]["models"]["sft"]["test"]
    assert result["recurrence_steps"] == 2  # the headline: the training mean
    depths = result["by_recurrence"]
    assert list(depths) == ["r=2", "r=1", "r=3", "exit"]
    assert depths["r=1"]["recurrence_steps"] == 1 and depths["r=3"]["recurrence_steps"] == 3
    assert depths["exit"]["max_recurrences"] == 3 and 1 <= depths["exit"]["recurrence_steps"] <= 3
    assert sum(depths["exit"]["recurrence_histogram"].values()) == round(
        depths["exit"]["generated_tokens"] * result["n"]
    )
    diagnostics = json.loads((out / "eval" / "diagnostics" / "sft.test.json").read_text())
    assert len(diagnostics["successive_distance"]) == 3 and len(diagnostics["two_back_distance"]) == 2
    assert (out / "eval" / "diagnostics" / "recurrence.png").stat().st_size > 0
    assert (out / "eval" / "sft.test.r=3.samples.jsonl").exists()


def test_a_resumed_run_ends_with_the_weights_and_draws_of_one_that_never_stopped(trained, tmp_path):
    out, _ = trained
    copy = tmp_path / "run"
    # as if killed after the checkpoint of step 3: later checkpoints, model and done gone
    killed_after_first_checkpoint(out, copy, "sft", later_stages=["eval"])
    sft = copy / "sft"
    run_recipe(recipe(copy), resume=True)
    expected = load_file(out / "sft" / "model" / "model.safetensors")
    got = load_file(sft / "model" / "model.safetensors")
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=0, atol=1e-6, msg=name)


def test_reasonkit_eval_takes_depths_and_refuses_vllm(trained, tmp_path, capsys):
    out, _ = trained
    benchmark = tmp_path / "b.jsonl"
    benchmark.write_text(
        "".join(json.dumps({"prompt": f"What is {a} * 3?", "answer": str(3 * a)}) + "\n" for a in range(4))
    )
    model = str(out / "sft" / "model")
    common = [model, "--benchmark", str(benchmark), "--max-new-tokens", "6", "--output", str(tmp_path / "e")]
    assert (
        main(["eval", *common, "--engine", "transformers", "--recurrences", "1", "4", "--exit-kl", "1e-3"])
        == 0
    )
    results = json.loads((tmp_path / "e" / "model.b.results.json").read_text())
    assert list(results["by_recurrence"]) == ["r=2", "r=1", "r=4", "exit"]
    assert main(["eval", *common, "--engine", "vllm"]) != 0
    assert "engine 'vllm' cannot run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"eval": {**STAGES["eval"], "engine": "vllm"}},
            "stages.eval.engine: vllm cannot run a recurrent-depth model",
        ),
        (
            {"grpo": {"type": "grpo", "init": "sft"}},
            "stages.grpo: a grpo stage cannot run a recurrent-depth model",
        ),
        ({"eval": {**STAGES["eval"], "recurrences": [0]}}, "stages.eval.recurrences: [0]"),
        ({"eval": {**STAGES["eval"], "exit_kl": 0}}, "stages.eval.exit_kl: 0.0; a KL threshold above 0"),
    ],
)
def test_validate_refuses_what_cannot_run_a_recurrent_model(tmp_path, change, message):
    with pytest.raises(ConfigError) as refused:
        recipe(tmp_path, {**STAGES, **change})
    assert message in str(refused.value)


def test_validate_refuses_a_bad_layout_and_depths_for_a_model_without_recurrence(tmp_path):
    bad = {**RECURRENT_TINY, "recurrent": {"core_layers": 0, "mean_recurrence": 0}}
    with pytest.raises(ConfigError) as refused:
        recipe(tmp_path, tiny=bad)
    assert "model.tiny.recurrent.core_layers: at least 1, got 0" in str(refused.value)
    assert "model.tiny.recurrent.mean_recurrence: at least 1, got 0" in str(refused.value)
    plain = {key: value for key, value in RECURRENT_TINY.items() if key != "recurrent"}
    with pytest.raises(ConfigError) as refused:
        recipe(tmp_path, tiny=plain)
    assert "stages.eval: recurrences/exit_kl set the test-time depth of a recurrent-depth model" in str(
        refused.value
    )
