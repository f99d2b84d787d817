"""LoRA through peft in both stages: adapters saved (and merged weights on request), later stages and
evaluation load them, and GRPO's KL reference is the same model with its adapters switched off."""

import json
from pathlib import Path

from peft import PeftConfig

from reasonkit.manifest import read_manifest
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.conftest import TINY_SIZES

TOY_REWARD = str(Path(__file__).parent / "helpers" / "toy_rewards.py") + ":digit_fraction"


def test_lora_distill_then_lora_grpo_then_evaluate(tmp_path):
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    recipe = build_recipe(
        {
            "output_dir": str(tmp_path),
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 10, "train_size": 64}},
            "stages": {
                "sft": {
                    "type": "sft",
                    "learning_rate": 3e-3,
                    "batch_size": 8,
                    "max_steps": 4,
                    "max_length": 128,
                    "lora": {**lora, "save_merged": True},
                },
                "grpo": {
                    "type": "grpo",
                    "init": "sft",
                    "rewards": [{"name": TOY_REWARD}],  # varies from the first step: a gradient at once
                    "prompts_per_step": 2,
                    "num_generations": 4,
                    "max_new_tokens": 8,
                    "learning_rate": 1e-2,
                    "beta": 0.1,
                    "max_steps": 3,
                    "engine": "transformers",
                    "reward_workers": 0,
                    "lora": lora,
                },
                "eval": {
                    "type": "eval",
                    "models": ["sft", "grpo"],
                    "max_new_tokens": 8,
                    "engine": "transformers",
                },
            },
        }
    )
    summary = run_recipe(recipe)

    for stage in ("sft", "grpo"):
        model_dir = tmp_path / stage / "model"
        assert (model_dir / "adapter_config.json").is_file()
        assert not (model_dir / "model.safetensors").exists()  # the adapter only
        assert "LoRA adapters r=4" in read_manifest(model_dir)["objective"]["lora"]
    assert (tmp_path / "sft" / "merged" / "model.safetensors").is_file()
    # GRPO's adapters sit on the distilled model (base + SFT adapters), which loading chains back to.
    assert PeftConfig.from_pretrained(str(tmp_path / "grpo" / "model")).base_model_name_or_path == str(
        tmp_path / "sft" / "model"
    )
    assert not (tmp_path / "grpo" / "merged").exists()
    kl = read_manifest(tmp_path / "grpo" / "model")["objective"]["kl"]
    assert kl["reference"] == "the policy with LoRA adapters disabled"

    records = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["kl"] == 0.0  # the first update starts at the reference
    assert records[-1]["kl"] > 0.0  # after it, the adapters move the policy away from it
    assert set(summary["stages"]["eval"]["models"]) == {"sft", "grpo"}
