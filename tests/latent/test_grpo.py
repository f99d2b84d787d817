"""GRPO continuing from a latent model: it samples with the thoughts, trains through them, saves a model
that still thinks (the eval stage and `reasonkit eval` run it so), and `validate` refuses what cannot work."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.grpo.thinking import thinking_of
from reasonkit.latent.engine import LatentSettings, read_latent_settings, write_latent_settings
from reasonkit.manifest import read_manifest
from reasonkit.pipeline import run_recipe
from tests.latent.test_stage import SFT, latent_stage, recipe

TOY = str(Path(__file__).parents[1] / "helpers" / "toy_rewards.py")


def grpo_stage(**extra) -> dict:
    stage = {
        "type": "grpo",
        "init": "latent",
        "rewards": [{"name": f"{TOY}:digit_fraction"}],
        "prompts_per_step": 2,
        "num_generations": 4,
        "max_new_tokens": 8,
        "learning_rate": 3e-3,
        "beta": 0.04,  # a reference model, through its thoughts too
        "num_iterations": 2,  # old log-probs, through the thoughts
        "max_steps": 3,
        "logging_steps": 1,
        "engine": "transformers",
    }
    return {**stage, **extra}


def test_grpo_from_a_latent_model_trains_and_saves_a_model_that_still_thinks(tmp_path, capsys):
    stages = {
        "sft": SFT,
        "latent": latent_stage(),
        "grpo": grpo_stage(),
        "eval": {
            "type": "eval",
            "models": ["latent", "grpo"],
            "max_new_tokens": 16,
            "engine": "transformers",
        },
    }
    summary = run_recipe(recipe(tmp_path, stages))
    records = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["entropy"] > 0 and r["kl"] >= 0 for r in records) and records[-1]["kl"] > 0
    before = load_file(tmp_path / "latent" / "model" / "model.safetensors")
    after = load_file(tmp_path / "grpo" / "model" / "model.safetensors")
    assert not torch.equal(
        after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"]
    )
    saved = tmp_path / "grpo" / "model"
    assert read_latent_settings(saved) == read_latent_settings(tmp_path / "latent" / "model")
    manifest = read_manifest(saved)
    assert manifest["format"]["think_prefilled"] and "4 thoughts" in manifest["objective"]["thoughts"]
    assert summary["stages"]["eval"]["models"]["grpo"]["test"]["thoughts"] == 4
    benchmark = tmp_path / "b.jsonl"
    benchmark.write_text('{"prompt": "What is 12 * 34?", "answer": "408"}\n')
    assert main(["eval", str(saved), "--benchmark", str(benchmark), "--engine", "transformers",
                 "--max-new-tokens", "16", "--output", str(tmp_path / "e")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "e" / "model.b.results.json").read_text())["thoughts"] == 4


@pytest.mark.parametrize("engine", ["vllm", "vllm_server"])
def test_validate_refuses_grpo_on_a_latent_model_where_it_cannot_think(tmp_path, engine):
    with pytest.raises(ConfigError) as refused:
        recipe(tmp_path, {"sft": SFT, "latent": latent_stage(), "grpo": grpo_stage(engine=engine)})
    assert f"stages.grpo.engine: {engine} cannot run 'latent', a latent model" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        recipe(
            tmp_path,
            {"sft": SFT, "latent": latent_stage(), "grpo": grpo_stage(micro_batch_layout="packed"),
             "eval": {"type": "eval", "models": ["grpo"], "engine": engine}},
        )  # fmt: skip
    message = str(refused.value)
    # the GRPO model thinks too: an eval of it on vLLM is refused as well
    assert "stages.grpo.micro_batch_layout: packed" in message
    assert f"stages.eval.engine: {engine} cannot run 'grpo', a latent model" in message
    with pytest.raises(ConfigError, match=r"stages.more.init: 'latent' is a latent model; a sft stage"):
        recipe(tmp_path, {"sft": SFT, "latent": latent_stage(), "more": {**SFT, "init": "latent"}})


def test_grpo_on_a_latent_model_under_several_processes_or_deepspeed_is_refused_with_how_to_launch(tmp_path):
    write_latent_settings(tmp_path, LatentSettings(thoughts=4))
    thinking = thinking_of(str(tmp_path))
    thinking.check_launch("stages.grpo", world=1, deepspeed=False)
    for world, deepspeed in [(2, False), (1, True)]:
        with pytest.raises(ConfigError, match="runs in one process without DeepSpeed so far; launch it"):
            thinking.check_launch("stages.grpo", world=world, deepspeed=deepspeed)
    text_model = tmp_path / "elsewhere"
    thinking_of(str(text_model)).check_launch("stages.grpo", world=2, deepspeed=True)
