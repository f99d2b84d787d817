import re
from pathlib import Path

import pytest
import yaml

from reasonkit.config import ConfigError, apply_override
from reasonkit.eval.schema import EvalStage
from reasonkit.recipe import build_recipe, load_recipe
from reasonkit.sft.schema import SFTStage

RECIPES = sorted(
    p for p in Path(__file__).parents[1].joinpath("recipes").rglob("*.yaml") if "accelerate" not in p.parts
)

MINIMAL = {
    "output_dir": "runs/x",
    "model": {"tiny": {"hidden_size": 64}},
    "data": {"task": "arithmetic"},
    "stages": {"sft": {"max_steps": 3}, "eval": {}},
}


def write(tmp_path, raw) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def problems(tmp_path, raw, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(write(tmp_path, raw), list(overrides))
    return str(info.value)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    load_recipe(path)


def test_minimal_recipe_and_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert isinstance(recipe.stages["sft"], SFTStage) and isinstance(recipe.stages["eval"], EvalStage)
    assert recipe.stages["sft"].learning_rate == 4e-5  # the distillation default
    assert recipe.stages["sft"].packing is False


def test_misspelt_key_names_file_key_and_closest(tmp_path):
    raw = {**MINIMAL, "stages": {"sft": {"lerning_rate": 1e-5}}}
    message = problems(tmp_path, raw)
    assert "recipe.yaml" in message and "stages.sft.lerning_rate" in message and "'learning_rate'" in message


def test_unknown_top_level_key_and_all_problems_reported(tmp_path):
    raw = {**MINIMAL, "outptu_dir": "x", "model": {"tiny": {"hidden_size": "big"}}}
    message = problems(tmp_path, raw)
    assert "outptu_dir" in message and "'output_dir'" in message
    assert "model.tiny.hidden_size: expected int" in message


def test_missing_required_field(tmp_path):
    raw = {k: v for k, v in MINIMAL.items() if k != "output_dir"}
    assert "output_dir: required field is missing" in problems(tmp_path, raw)


def test_wrong_types(tmp_path):
    raw = {**MINIMAL, "stages": {"sft": {"batch_size": 2.5, "traces": "yes"}, "eval": {"models": "sft"}}}
    message = problems(tmp_path, raw)
    assert "stages.sft.batch_size: expected int" in message
    assert "stages.sft.traces: expected bool" in message
    assert "stages.eval.models: expected a list" in message


def test_choices_and_stage_types(tmp_path):
    raw = {**MINIMAL, "model": {"tiny": {}, "dtype": "fp8"}, "stages": {"x": {"type": "ppo"}}}
    message = problems(tmp_path, raw)
    assert "'fp8' is not one of" in message and "'ppo' is not a stage type" in message


def test_packing_is_refused_with_the_reason(tmp_path):
    message = problems(tmp_path, MINIMAL, ["stages.sft.packing=true"])
    assert "stages.sft.packing" in message and "splits traces" in message


def test_cross_references_are_checked(tmp_path):
    raw = {**MINIMAL, "stages": {"eval": {"models": ["later"]}, "later": {"type": "sft", "init": "nowhere"}}}
    message = problems(tmp_path, raw)
    assert "'later' is not 'model' nor an earlier training stage" in message and "'nowhere'" in message
    assert "nothing to evaluate" in problems(tmp_path, {**MINIMAL, "stages": {"eval": {}}})
    assert build_recipe({**MINIMAL, "stages": {"eval": {"models": ["model"]}}})


def test_exactly_one_model_source_and_data_source(tmp_path):
    raw = {**MINIMAL, "model": {"path": "Qwen/Qwen2.5-0.5B", "tiny": {}}, "data": {}}
    message = problems(tmp_path, raw)
    assert "exactly one of 'path'" in message and "exactly one of 'task'" in message


def test_overrides_typed_and_nested(tmp_path):
    recipe = load_recipe(
        write(tmp_path, MINIMAL), ["stages.sft.learning_rate=1e-5", "model.tiny.num_layers=3", "seed=7"]
    )
    assert recipe.stages["sft"].learning_rate == 1e-5  # YAML reads 1e-5 as text; the schema makes it a float
    assert recipe.model.tiny.num_layers == 3 and recipe.seed == 7


def test_misspelt_override_is_an_error(tmp_path):
    assert "'learning_rate'" in problems(tmp_path, MINIMAL, ["stages.sft.learning_rat=1e-5"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override({}, "stages.sft.learning_rate")


def test_not_a_mapping_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_build_recipe_accepts_stage_named_by_type():
    recipe = build_recipe({**MINIMAL, "stages": {"sft": {}, "eval": {"num_samples": 4, "temperature": 0.6}}})
    assert recipe.stages["eval"].num_samples == 4


def test_eval_settings_that_cannot_work_are_refused(tmp_path):
    stages = {"sft": {}, "eval": {"num_samples": 2, "k": [1, 8], "verifier": "exact_anwser"}}
    found = problems(tmp_path, {**MINIMAL, "stages": stages})
    assert "stages.eval.k: [8] outside 1..num_samples=2; raise num_samples to 8 or drop them" in found
    assert "stages.eval: num_samples=2 with temperature 0 repeats one greedy answer" in found
    assert re.search(r"stages.eval.verifier: .*exact_answer", found), found


def test_reward_arguments_are_checked_against_the_function(tmp_path):
    stages = {"grpo": {"rewards": [{"name": "soft_overlong", "args": {"buffer_tokns": 64}}]}}
    assert "stages.grpo.rewards[0].args.buffer_tokns: unknown key; did you mean 'buffer_tokens'?" in problems(
        tmp_path, {**MINIMAL, "stages": stages}
    )
    stages["grpo"]["rewards"][0]["args"] = {"buffer_tokens": 64}
    assert load_recipe(write(tmp_path, {**MINIMAL, "stages": stages})).stages["grpo"].rewards[0].args == {
        "buffer_tokens": 64
    }


def test_accuracy_is_judged_like_the_answer_reward_the_stage_trains_with():
    def accuracy_verifier(stage):
        return stage.judged_by()

    def stage(*rewards, **extra):
        return build_recipe({**MINIMAL, "stages": {"grpo": {"rewards": list(rewards), **extra}}}).stages[
            "grpo"
        ]

    assert accuracy_verifier(stage({"name": "exact_answer"})) == "exact_answer"
    assert accuracy_verifier(stage({"name": "think_format"}, {"name": "math"})) == "math"
    assert accuracy_verifier(stage({"name": "length_scaled"})) == "math"
    assert (
        accuracy_verifier(stage({"name": "length_scaled", "args": {"verifier": "exact_answer"}}))
        == "exact_answer"
    )
    assert accuracy_verifier(stage({"name": "math"}, accuracy_verifier="exact_answer")) == "exact_answer"


def test_arithmetic_shares_outside_zero_one_are_errors(tmp_path):
    message = problems(
        tmp_path, MINIMAL, ["data.arithmetic.shortcut_rate=7", "data.arithmetic.quick_share=-1"]
    )
    assert "data.arithmetic.shortcut_rate: 7.0 is a share, between 0 and 1" in message
    assert "data.arithmetic.quick_share: -1.0 is a share" in message


@pytest.mark.parametrize(
    "setting, message",
    [
        ("temperature=0", r"temperature: 0.*use a value > 0"),
        ("num_iterations=0", r"num_iterations: 0; at least 1"),
        ("importance_cap=0", r"importance_cap: 0.*would zero every token's loss"),
        ("beta=-0.1", r"beta: -0.1; the KL coefficient is >= 0"),
        ("kl_estimator=k1", r"kl_estimator: k1 as a loss term has zero expected gradient.*use k3"),
        ("kl_estimator=k4", r"kl_estimator: unknown KL estimator 'k4'; did you mean 'k3'"),
    ],
)
def test_grpo_settings_that_cannot_train_are_refused(tmp_path, setting, message):
    raw = {**MINIMAL, "stages": {"grpo": {"rewards": [{"name": "exact_answer"}]}}}
    assert re.search(message, problems(tmp_path, raw, [f"stages.grpo.{setting}"]))


def test_float16_grpo_is_refused(tmp_path):
    raw = {**MINIMAL, "stages": {"grpo": {"rewards": [{"name": "exact_answer"}]}}}
    assert "use bfloat16" in problems(tmp_path, raw, ["model.dtype=float16"])


def test_the_recipe_dtype_decides_the_precision_and_a_launch_that_differs_is_warned_about(
    monkeypatch, caplog
):
    from reasonkit.precision import launch_mixed_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert launch_mixed_precision("bfloat16") == "bf16"
    assert "the launch asked for mixed_precision 'no'" in caplog.text


def test_variant_names_in_the_schema_are_those_of_their_registries():
    """A Literal of variant names is a copy of its registry's keys: adding a variant to one and not the
    other would make recipes refuse it, or accept a name nothing implements."""
    import typing

    import rewards
    from reasonkit.algorithms import IMPORTANCE_LEVELS
    from reasonkit.grpo.schema import GRPOStage, RewardSpec
    from reasonkit.stages import STAGES
    from rewards.convention import SHAPES

    def choices(cls, name) -> set:
        hint = typing.get_type_hints(cls)[name]
        literal = next(a for a in (hint, *typing.get_args(hint)) if typing.get_origin(a) is typing.Literal)
        return set(typing.get_args(literal))

    assert choices(GRPOStage, "importance_level") == set(IMPORTANCE_LEVELS)
    assert choices(GRPOStage, "accuracy_verifier") <= set(rewards.known())
    assert choices(RewardSpec, "completions") == set(SHAPES)
    assert all(choices(entry.schema, "type") == {name} for name, entry in STAGES.items())


def test_objective_variants_are_checked_against_their_registries_at_validate(tmp_path):
    """The objective's variants are registry names (or a function of one's own): a misspelt one is named
    with the closest, and a user's function given as package.module:function is accepted."""

    def grpo(**settings):
        return {**MINIMAL, "stages": {"grpo": {"rewards": [{"name": "exact_answer"}], **settings}}}

    with pytest.raises(
        ConfigError, match=r"advantage_scale: unknown advantage scale 'grop'; did you mean 'group'"
    ):
        build_recipe(grpo(advantage_scale="grop"))
    with pytest.raises(ConfigError, match=r"loss_aggregation: unknown loss aggregation 'tokens'"):
        build_recipe(grpo(loss_aggregation="tokens"))
    with pytest.raises(ConfigError, match=r"kl_estimator: .*no 'k9'"):
        build_recipe(grpo(kl_estimator="reasonkit.algorithms.losses:k9"))
    own = build_recipe(grpo(advantage_scale="reasonkit.algorithms.advantages:_batch_std"))
    assert own.stages["grpo"].advantage_scale == "reasonkit.algorithms.advantages:_batch_std"
