"""report_to: wandb, in offline mode (no network): one run per stage carrying the recipe, the resolved
objective, the metrics and the summary; a clear error when the package is missing."""

import glob
import struct
import sys
import time

import pytest

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.conftest import TINY_SIZES


def wandb_records(run_dir: str) -> list:
    """The records of an offline run's ``.wandb`` file: the LevelDB log format (32 KiB blocks, 7-byte
    record headers) after a 7-byte file header, each record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(f"{run_dir}/run-*.wandb")
    data, block, position, chunk, found = open(path, "rb").read(), 32 * 1024, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if left < 7 or (length == 0 and kind == 0):  # the rest of the block is padding
            position += left
            continue
        if position + 7 + length > len(data):  # still being written
            break
        chunk += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            found.append(record)
            chunk = b""
    return found


def run_contents(run_dir: str) -> dict:
    import json

    def key(item) -> str:  # a key with a "/" is stored as its parts
        return item.key or "/".join(item.nested_key)

    # W&B's service writes the file in the background: read it once the run's exit record is there.
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_dir)):
        assert time.monotonic() < deadline, f"{run_dir}: no exit record after 30 s"
        time.sleep(0.2)
    contents = {"config": {}, "history": [], "summary": {}}
    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            contents["name"], contents["group"] = record.run.display_name, record.run.run_group
            contents["job_type"] = record.run.job_type
            contents["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            contents["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            contents["history"].append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            contents["summary"].update({key(i): json.loads(i.value_json) for i in record.summary.update})
    return contents


def wandb_recipe(output_dir, **extra):
    return build_recipe(
        {
            "output_dir": str(output_dir),
            "seed": 3,
            "report_to": ["jsonl", "wandb"],
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 4, "train_size": 100}},
            "stages": {
                "grpo": {
                    "rewards": [{"name": "exact_answer"}],
                    "prompts_per_step": 2,
                    "num_generations": 2,
                    "max_new_tokens": 6,
                    "beta": 0.0,
                    "max_steps": 2,
                    "save_steps": 100,
                    "engine": "transformers",
                    "reward_workers": 0,
                },
                "eval": {"type": "eval", "max_new_tokens": 6, "engine": "transformers"},
            },
            **extra,
        }
    )


def test_wandb_offline_run_per_stage_has_recipe_objective_metrics_and_summary(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # `make install` installs it (the wandb extra)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "reasonkit-tests")
    summary = run_recipe(wandb_recipe(tmp_path / "run"))
    runs = {}
    for run_dir in glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*")):
        contents = run_contents(run_dir)
        runs[contents["name"]] = contents
    assert set(runs) == {"run/grpo", "run/eval"}
    grpo = runs["run/grpo"]
    assert (grpo["group"], grpo["job_type"]) == ("run", "grpo")
    assert grpo["config"]["recipe"]["output_dir"] == str(tmp_path / "run")
    assert grpo["config"]["recipe"]["stages"]["grpo"]["rewards"][0]["name"] == "exact_answer"
    assert grpo["config"]["objective"]["loss_aggregation"] == "sequence_mean"
    assert grpo["config"]["objective"]["rewards"] == [{"name": "exact_answer", "weight": 1.0, "args": {}}]
    steps = [h for h in grpo["history"] if "reward/mean" in h]
    assert [h["_step"] for h in steps] == [1, 2]
    assert all("completion_length" in h and "reward/exact_answer/mean" in h for h in steps)
    stage_summary = summary["stages"]["grpo"]
    for key in ("steps", "first_reward", "last_reward", "wall_seconds"):
        assert grpo["summary"][key] == pytest.approx(stage_summary[key]), key
    evaluation = runs["run/eval"]
    assert evaluation["job_type"] == "eval" and evaluation["config"]["objective"]["num_samples"] == 1
    pass1 = summary["stages"]["eval"]["models"]["grpo"]["test"]["pass@1"]["value"]
    assert evaluation["summary"]["models"]["grpo"]["test"]["pass@1"]["value"] == pytest.approx(pass1)


def test_wandb_missing_package_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails, find_spec finds nothing
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: " + str(tmp_path / "run") + "\nreport_to: [jsonl, wandb]\nmodel: {tiny: {}}\n"
        "data: {task: arithmetic}\nstages: {grpo: {rewards: [{name: exact_answer}]}}\n"
    )
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert (
        "report_to: wandb needs the wandb package, which is not installed: pip install 'reasonkit[wandb]'"
        in err
    )
    assert not (tmp_path / "run").exists()
    assert main(["run", str(recipe), "--dry-run"]) == 1
    assert "FAILED: report_to: wandb needs the wandb package" in capsys.readouterr().out


def test_wandb_without_credentials_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no saved login
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: " + str(tmp_path / "run") + "\nreport_to: [jsonl, wandb]\nmodel: {tiny: {}}\n"
        "data: {task: arithmetic}\nstages: {grpo: {rewards: [{name: exact_answer}]}}\n"
    )
    assert main(["run", str(recipe)]) == 2
    assert "report_to: wandb has no credentials here: run `wandb login`" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["run", str(recipe), "--dry-run"]) == 1
    assert "WANDB_MODE=offline" in capsys.readouterr().out
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["run", str(recipe), "--dry-run"]) == 0


def test_report_to_names_only_known_destinations():
    with pytest.raises(
        ConfigError, match=r"report_to\[1\]: 'mlflow' is not one of \['tensorboard', 'jsonl', 'wandb'\]"
    ):
        build_recipe(
            {
                "output_dir": "x",
                "report_to": ["jsonl", "mlflow"],
                "model": {"tiny": {}},
                "data": {"task": "arithmetic"},
                "stages": {"grpo": {"rewards": [{"name": "exact_answer"}]}},
            }
        )
