"""The latent stage through the pipeline: a run after a distilled model, its outputs, its model evaluated
by the eval stage and `reasonkit eval` with its thoughts, a second architecture under LoRA, an exact resume,
and what `validate` refuses."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.latent.engine import read_latent_settings
from reasonkit.manifest import read_manifest
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.conftest import TINY_SIZES
from tests.helpers.killed_run import killed_after_first_checkpoint

DATA = {"task": "arithmetic", "arithmetic": {"test_size": 12, "train_size": 64}}


def latent_stage(**extra) -> dict:
    stage = {
        "type": "latent",
        "init": "sft",
        "max_stage": 2,
        "thoughts_per_step": 2,
        "steps_per_stage": 3,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "mix_earlier": 0.3,
        "logging_steps": 1,
        "eval": {"max_new_tokens": 16, "diagnose_problems": 6},
    }
    return {**stage, **extra}


def recipe(output_dir, stages: dict, model=None):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "report_to": ["jsonl"],
            "model": model or {"tiny": TINY_SIZES},
            "data": DATA,
            "stages": stages,
        }
    )


SFT = {"type": "sft", "learning_rate": 3e-3, "batch_size": 8, "max_steps": 3, "max_length": 96}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("latent") / "run"
    stages = {
        "sft": SFT,
        "latent": latent_stage(save_steps=2),
        "eval": {"type": "eval", "models": ["sft", "latent"], "max_new_tokens": 16, "engine": "transformers"},
    }
    return out, run_recipe(recipe(out, stages))


def test_run_writes_models_evaluations_diagnostics_and_curves(trained):
    out, summary = trained
    latent = summary["stages"]["latent"]
    assert set(latent["models"]) == {"latent_stage1", "latent_stage2"}
    for k, name in ((1, "latent_stage1"), (2, "latent_stage2")):
        result = latent["models"][name]["test"]
        assert result["thoughts"] == 2 * k and result["n"] == 12
        assert 0 <= result["pass@1"]["value"] <= 1 and result["generated_tokens"] > 0
    assert latent["steps"] == 6 and latent["examples"] == 64
    for name in (
        "curves.png", "metrics.jsonl", "model/model.safetensors", "model/latent.json",
        "model/reasonkit_manifest.json", "diagnostics/latent_stage2.json", "diagnostics/thoughts.png",
        "eval/latent_stage1.samples.jsonl",
    ):  # fmt: skip
        assert (out / "latent" / name).exists(), name
    records = [json.loads(line) for line in (out / "latent" / "metrics.jsonl").read_text().splitlines()]
    assert [r["curriculum_stage"] for r in records if "loss" in r] == [1, 1, 1, 2, 2, 2]
    assert [r["passes"] for r in records if "loss" in r][-1] == 5  # k*c + 1 at stage 2
    manifest = read_manifest(out / "latent" / "model")
    assert manifest["stage"] == "latent" and manifest["format"]["think_prefilled"]
    assert read_latent_settings(out / "latent" / "model").thoughts == 4


def test_every_weight_moved_and_the_vocabulary_grew_by_the_thought_tokens(trained):
    out, _ = trained
    before = load_file(out / "sft" / "model" / "model.safetensors")
    after = load_file(out / "latent" / "model" / "model.safetensors")
    for name, weight in before.items():
        if name == "model.embed_tokens.weight":
            assert after[name].shape[0] == weight.shape[0] + 3
            weight, moved = weight, after[name][: weight.shape[0]]
        else:
            moved = after[name]
        assert not torch.equal(moved, weight), name


def test_the_diagnostics_compare_each_thought_with_its_step(trained):
    out, _ = trained
    figures = json.loads((out / "latent" / "diagnostics" / "latent_stage2.json").read_text())
    assert [t["thought"] for t in figures["per_thought"]] == [1, 2, 3, 4]
    assert [t["step"] for t in figures["per_thought"]] == [1, 1, 2, 2]
    first = figures["per_thought"][0]
    assert 0 <= first["result_hit"] <= 1 and first["compared"] == 6 and first["norm"] > 0
    assert 0 <= first["result_hit_other_problem"] <= 1
    assert len(figures["examples"][0]["thoughts"][0]) == 5  # top-5 tokens of the first thought


def test_the_eval_stage_and_the_command_run_the_saved_latent_model_with_its_thoughts(
    trained, tmp_path, capsys
):
    out, summary = trained
    evaluated = summary["stages"]["eval"]["models"]["latent"]["test"]
    assert evaluated["thoughts"] == 4
    # the in-stage evaluation after the last stage and the eval stage saw the same model
    assert evaluated["pass@1"] == summary["stages"]["latent"]["models"]["latent_stage2"]["test"]["pass@1"]
    benchmark = tmp_path / "b.jsonl"
    benchmark.write_text('{"prompt": "What is 12 * 34?", "answer": "408"}\n')
    model = str(out / "latent" / "model")
    assert main(["eval", model, "--benchmark", str(benchmark), "--engine", "transformers",
                 "--max-new-tokens", "16", "--output", str(tmp_path / "e")]) == 0  # fmt: skip
    assert "thoughts" in capsys.readouterr().out  # the printed table: tokens and thoughts next to pass@1
    result = json.loads((tmp_path / "e" / "model.b.results.json").read_text())
    assert result["thoughts"] == 4 and "generated_tokens" in result
    refused = [
        "eval",
        model,
        "--benchmark",
        str(benchmark),
        "--engine",
        "vllm",
        "--output",
        str(tmp_path / "v"),
    ]
    assert main(refused) != 0
    assert "engine 'vllm' cannot run" in capsys.readouterr().err


def test_a_resumed_run_ends_with_the_weights_of_one_that_never_stopped(trained, tmp_path):
    out, _ = trained
    copy = tmp_path / "run"
    # as if killed after the checkpoint of step 2 (mid stage 1): later checkpoints, model and done gone
    killed_after_first_checkpoint(out, copy, "latent", later_stages=["eval"])
    latent = copy / "latent"
    stages = {
        "sft": SFT,
        "latent": latent_stage(save_steps=2),
        "eval": {"type": "eval", "models": ["sft", "latent"], "max_new_tokens": 16, "engine": "transformers"},
    }
    summary = run_recipe(recipe(copy, stages), resume=True)
    expected = load_file(out / "latent" / "model" / "model.safetensors")
    got = load_file(latent / "model" / "model.safetensors")
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=0, atol=1e-6, msg=name)
    records = [json.loads(line) for line in (latent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert set(summary["stages"]["latent"]["models"]) == {"latent_stage1", "latent_stage2"}


def test_a_curriculum_continued_by_a_second_stage_ends_with_the_weights_of_one_stage(trained, tmp_path):
    """Stage 1 in one latent stage, stage 2 in another continuing it (first_stage: 2): the same model as one
    stage running both, the first stage's model kept on the way."""
    out, _ = trained
    stages = {
        "sft": SFT,
        "latent_one": latent_stage(max_stage=1),
        "latent": latent_stage(init="latent_one", first_stage=2),
    }
    summary = run_recipe(recipe(tmp_path / "run", stages))
    expected = load_file(out / "latent" / "model" / "model.safetensors")
    got = load_file(tmp_path / "run" / "latent" / "model" / "model.safetensors")
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=0, atol=1e-6, msg=name)
    assert set(summary["stages"]["latent_one"]["models"]) == {"latent_stage1"}
    assert set(summary["stages"]["latent"]["models"]) == {"latent_stage2"}
    assert summary["stages"]["latent"]["steps"] == 3
    assert read_latent_settings(tmp_path / "run" / "latent_one" / "model").thoughts == 2


@pytest.fixture(scope="module")
def qwen2_model_dir(tmp_path_factory):
    """A second architecture: a tiny Qwen2 with the tiny tokenizer, saved as a hub model would be."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reasonkit.models import train_tiny_tokenizer
    from tests.conftest import arithmetic_corpus

    directory = tmp_path_factory.mktemp("qwen2") / "model"
    tokenizer = train_tiny_tokenizer(arithmetic_corpus())
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_lora_on_a_second_architecture_trains_the_adapters_and_saves_merged_weights(
    qwen2_model_dir, tmp_path
):
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    stages = {"latent": latent_stage(init="model", lora=lora, thoughts_per_step=1, normalise_thoughts=True)}
    summary = run_recipe(recipe(tmp_path, stages, model={"path": str(qwen2_model_dir)}))
    saved = tmp_path / "latent" / "model"
    assert not (saved / "adapter_config.json").exists()  # merged: the vocabulary grew
    before = load_file(qwen2_model_dir / "model.safetensors")
    after = load_file(saved / "model.safetensors")
    assert not torch.equal(
        after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(
        after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"]
    )
    assert read_latent_settings(saved).normalise and summary["stages"]["latent"]["models"]["latent_stage2"]


def test_validate_refuses_vllm_for_a_latent_model_and_impossible_settings(tmp_path):
    eval_vllm = {"type": "eval", "engine": "vllm"}
    with pytest.raises(ConfigError, match=r"stages.eval.engine: vllm cannot run 'latent', a latent model"):
        recipe(tmp_path, {"sft": SFT, "latent": latent_stage(), "eval": eval_vllm})
    # an eval of other models only, on vLLM, is fine
    recipe(tmp_path, {"sft": SFT, "latent": latent_stage(), "eval": {**eval_vllm, "models": ["sft"]}})
    with pytest.raises(ConfigError) as refused:
        recipe(
            tmp_path,
            {"sft": SFT, "latent": latent_stage(splitter="sentense", thoughts="pause", normalise_thoughts=True,
                                                 mix_earlier=1.5, thoughts_per_step=0)},
        )  # fmt: skip
    message = str(refused.value)
    assert "did you mean 'sentences'" in message and "pause tokens feed no state back" in message
    assert "mix_earlier: 1.5 is a share" in message and "thoughts_per_step: at least 1" in message


def test_validate_refuses_a_continuation_of_anything_but_the_latent_stage_before_it(tmp_path):
    with pytest.raises(
        ConfigError, match=r"first_stage: 2 continues a latent stage's curriculum, but init 'sft'"
    ):
        recipe(tmp_path, {"sft": SFT, "latent": latent_stage(first_stage=2)})
    with pytest.raises(ConfigError, match=r"first_stage: 3 must be between 1 and max_stage \(2\)"):
        recipe(tmp_path, {"sft": SFT, "latent": latent_stage(first_stage=3)})
    one = latent_stage(max_stage=1)
    with pytest.raises(
        ConfigError, match=r"stops at stage 1 and has another thoughts_per_step; it must stop at stage 2"
    ):
        recipe(
            tmp_path,
            {
                "sft": SFT,
                "one": one,
                "rest": latent_stage(init="one", first_stage=3, max_stage=3, thoughts_per_step=1),
            },
        )
    recipe(tmp_path, {"sft": SFT, "one": one, "rest": latent_stage(init="one", first_stage=2)})


def test_validate_refuses_a_model_without_inputs_embeds_and_a_tokenizer_without_added_tokens(
    tiny_model_dir, tmp_path
):
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from reasonkit.latent.schema import check_tokenizer

    class NoEmbedsConfig(LlamaConfig):
        model_type = "no_embeds_test"

    class NoEmbedsModel(LlamaForCausalLM):
        config_class = NoEmbedsConfig

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    AutoConfig.register("no_embeds_test", NoEmbedsConfig)
    AutoModelForCausalLM.register(NoEmbedsConfig, NoEmbedsModel)
    directory = tmp_path / "no_embeds"
    shutil.copytree(tiny_model_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "no_embeds_test"}))
    with pytest.raises(ConfigError, match=r"NoEmbedsModel .* takes no inputs_embeds"):
        recipe(tmp_path / "run", {"latent": latent_stage(init="model")}, model={"path": str(directory)})
    recipe(tmp_path / "run", {"latent": latent_stage(init="model")}, model={"path": str(tiny_model_dir)})

    class NoAddedTokens:
        def get_vocab(self):
            return {}

        def add_tokens(self, tokens, special_tokens=False):
            raise NotImplementedError("this tokenizer has a fixed vocabulary")

    assert (
        "cannot take the thought tokens" in check_tokenizer(NoAddedTokens(), "stages.latent", ["<|bot|>"])[0]
    )


def test_the_dry_run_reads_the_traces_and_counts_the_short_ones(tmp_path, capsys):
    from reasonkit.cli.run import dry_run

    assert dry_run(recipe(tmp_path, {"sft": SFT, "latent": latent_stage(max_stage=3)})) == 0
    out = capsys.readouterr().out
    assert "traces split by sentences: 1-3 steps;" in out and "with fewer than max_stage=3" in out
