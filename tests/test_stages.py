import pytest

from reasonkit.cli.run import dry_run
from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from reasonkit.stages import STAGES
from tests.conftest import TINY_SIZES
from tests.helpers import toy_stage


@pytest.fixture
def copy_stage():
    STAGES.register("copy", toy_stage.COPY)
    yield
    STAGES.unregister("copy")


def recipe(output_dir, **copied):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 20, "train_size": 64}},
            "stages": {
                "sft": {"type": "sft", "learning_rate": 3e-3, "max_steps": 6, "max_length": 64},
                "copied": {"type": "copy", "init": "sft", "note": "a plug-in", **copied},
                "eval": {
                    "type": "eval",
                    "models": ["sft", "copied"],
                    "max_new_tokens": 24,
                    "engine": "transformers",
                },
            },
        }
    )


def test_a_stage_type_from_a_test_file_runs_between_two_real_stages(tmp_path, copy_stage, capsys):
    assert dry_run(recipe(tmp_path / "dry")) == 0
    assert "ok: copies sft" in capsys.readouterr().out
    summary = run_recipe(recipe(tmp_path / "run"))
    assert summary["stages"]["copied"]["copied_from"] == str(tmp_path / "run" / "sft" / "model")
    results = summary["stages"]["eval"]["models"]
    assert results["copied"]["test"]["n"] == 20  # the eval stage found the plug-in's model...
    assert results["copied"]["test"]["pass@1"] == results["sft"]["test"]["pass@1"]  # ...the same weights


def test_a_registered_stage_type_is_validated_like_the_others(tmp_path, copy_stage):
    with pytest.raises(ConfigError, match=r"stages.copied.init: 'nope' is not 'model' nor an earlier"):
        recipe(tmp_path, init="nope")
    with pytest.raises(ConfigError, match=r"stages.copied.nots: unknown key; did you mean 'note'"):
        recipe(tmp_path, nots="x")


def test_an_unknown_stage_type_names_the_registered_ones(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"stages.copied.type: 'copy' is not a stage type; choose one of \['sft', 'grpo', 'eval', 'trm', 'latent'\]",
    ):
        recipe(tmp_path)
