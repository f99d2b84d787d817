"""The launch checks a user meets before any step (the multi-process runs are in tests/distributed)."""

import pytest

from reasonkit.config import ConfigError, LoRASettings
from reasonkit.grpo.distributed import check_world, fit_deepspeed_config, prompt_shard
from reasonkit.grpo.schema import GRPOStage


def test_prompt_shards_cover_the_batch_in_order():
    indices = [7, 3, 9, 1, 4, 6]
    shards = [prompt_shard(indices, rank, 3) for rank in range(3)]
    assert shards == [[7, 3], [9, 1], [4, 6]]


def test_prompts_that_do_not_divide_across_processes_say_which_numbers_to_change():
    with pytest.raises(
        ConfigError, match=r"stages.rl.prompts_per_step=6 does not divide across 4 processes.*e.g. 8"
    ):
        check_world(GRPOStage(prompts_per_step=6), "rl", 4)
    check_world(GRPOStage(prompts_per_step=8), "rl", 4)


def test_deepspeed_autos_are_filled_from_the_recipe():
    config = {
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": 3},
        "train_micro_batch_size_per_gpu": "auto",
    }
    fit_deepspeed_config(config, GRPOStage(max_grad_norm=0.5), "rl", world=4, engine_has_own_weights=False)
    assert config["gradient_clipping"] == 0.5
    assert config["gradient_accumulation_steps"] == 1
    assert config["train_batch_size"] == 4
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize(
    "config, message",
    [
        ({"optimizer": {"type": "AdamW"}}, r"`optimizer` block; remove it: stages.rl sets the optimizer"),
        ({"scheduler": {"type": "WarmupLR"}}, r"`scheduler` block"),
        ({"gradient_clipping": 2.0}, r"gradient_clipping=2.0 contradicts stages.rl.max_grad_norm=1.0"),
        ({"gradient_accumulation_steps": 4}, r"gradient_accumulation_steps=4: GRPO accumulates"),
        ({"fp16": {"enabled": True}}, r"enables fp16: use bf16"),
    ],
)
def test_a_deepspeed_config_that_contradicts_the_recipe_is_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        fit_deepspeed_config(config, GRPOStage(), "rl", world=2, engine_has_own_weights=False)


def test_lora_on_vllm_under_zero3_is_refused_with_what_to_use_instead():
    zero3 = {"zero_optimization": {"stage": 3}}
    fit_deepspeed_config(
        dict(zero3), GRPOStage(), "rl", world=2, engine_has_own_weights=True
    )  # without LoRA: fine
    with pytest.raises(
        ConfigError, match=r"LoRA with engine=vllm under ZeRO-3 is not supported yet.*use ZeRO-2"
    ):
        stage = GRPOStage(lora=LoRASettings(), engine="vllm")
        fit_deepspeed_config(dict(zero3), stage, "rl", world=2, engine_has_own_weights=True)
