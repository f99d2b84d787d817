"""The trm stage through the pipeline: a run, its outputs, `reasonkit eval` on its model, an exact resume,
and the slot streams that make data parallelism exact."""

import json
import shutil

import pytest
import torch
import yaml

from reasonkit.cli import main
from reasonkit.config import ConfigError
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import load_recipe
from reasonkit.trm.data import PuzzleKind, SlotFeed, puzzle_splits
from reasonkit.trm.schema import TRMTask

TASK = {
    "name": "sudoku",
    "sudoku": {"size": 6, "min_clues": 12},
    "train_size": 48,
    "test_size": 16,
    "augment": True,
}
SMALL = {"hidden_size": 32, "latent_steps": 2, "recursions": 2}


def recipe_file(tmp_path, stages: dict, name="recipe.yaml"):
    raw = {"output_dir": str(tmp_path / "run"), "report_to": ["jsonl"], "stages": stages}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trm_stage(**extra) -> dict:
    stage = {
        "type": "trm",
        "task": TASK,
        "network": SMALL,
        "supervision_steps": 3,
        "batch_size": 8,
        "max_steps": 6,
        "logging_steps": 1,
        "learning_rate": 3e-3,
        "eval_steps": [1, 3, 6],
    }
    return {**stage, **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("trm")
    path = recipe_file(
        tmp_path, {"trm": trm_stage(), "single_pass": trm_stage(network={**SMALL, "mode": "single_pass"})}
    )
    summary = run_recipe(load_recipe(path))
    return tmp_path / "run", summary


def test_run_writes_summary_model_curves_and_evaluation(trained):
    out, summary = trained
    trm = summary["stages"]["trm"]
    assert 0 <= trm["exact_accuracy"] <= 1 and trm["n"] == 16
    assert set(trm["exact_accuracy_by_test_steps"]) == {"1", "3", "6"}
    assert set(trm["halting"]) == {"all_steps", "q_head", "fixed_point"}
    assert summary["stages"]["single_pass"]["exact_accuracy_by_test_steps"].keys() == {"1"}
    saved = json.loads((out / "summary.json").read_text())
    assert saved["stages"]["trm"]["exact_accuracy"] == trm["exact_accuracy"]
    for name in (
        "curves.png",
        "metrics.jsonl",
        "model/model.pt",
        "model/config.json",
        "model/reasonkit_manifest.json",
        "eval/results.json",
        "eval/test_steps.png",
        "eval/dynamics.png",
    ):
        assert (out / "trm" / name).exists(), name
    records = [json.loads(line) for line in (out / "trm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert {"loss", "cross_entropy", "halt_bce", "train_exact", "grad_norm", "learning_rate"} <= set(
        records[0]
    )


def test_every_weight_moved_and_the_model_reloads(trained):
    from reasonkit.trm.trainer import build_model, load_trm

    out, _ = trained
    stage, kind, model = load_trm(out / "trm" / "model")
    torch.manual_seed(0)  # the stage's seed: the initial weights
    initial = build_model(stage, kind).state_dict()
    for name, weight in model.state_dict().items():
        if name in ("y_init", "z_init"):
            continue
        assert not torch.equal(weight, initial[name]), f"{name} did not change"


def test_reasonkit_eval_on_a_trained_trm_prints_steps_halting_and_dynamics(trained, tmp_path, capsys):
    out, summary = trained
    assert (
        main(["eval", str(out / "trm" / "model"), "--steps", "1", "2", "12", "--output", str(tmp_path / "e")])
        == 0
    )
    printed = capsys.readouterr().out
    for text in ("test steps", "q_head", "fixed_point", "z_change", "cells_changed"):
        assert text in printed
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert set(results["test"]["by_steps"]) == {"1", "2", "12"}
    assert results["dynamics"][0] | {"step": 1, "recursion": 1} == results["dynamics"][0]
    assert len(results["dynamics"]) == 12 * 2  # every step's recursions
    assert (tmp_path / "e" / "dynamics.png").exists() and (tmp_path / "e" / "test_steps.png").exists()
    # the stage's own evaluation of the same weights agrees
    assert (
        results["test"]["by_steps"]["1"]["exact_accuracy"]
        == summary["stages"]["trm"]["exact_accuracy_by_test_steps"]["1"]
    )


def test_resume_continues_exactly(tmp_path):
    path = recipe_file(tmp_path, {"trm": trm_stage(save_steps=3, halt_exploration=0.5)})
    run_recipe(load_recipe(path))
    straight = torch.load(tmp_path / "run" / "trm" / "model" / "model.pt")
    metrics = (tmp_path / "run" / "trm" / "metrics.jsonl").read_text()
    # As if killed after the step-3 checkpoint: the stage's later outputs are gone.
    for name in ("model", "eval", "done.json"):
        target = tmp_path / "run" / "trm" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    run_recipe(load_recipe(path), resume=True)
    resumed = torch.load(tmp_path / "run" / "trm" / "model" / "model.pt")
    for name, weight in straight.items():
        torch.testing.assert_close(resumed[name], weight, rtol=0, atol=0, msg=name)
    assert (tmp_path / "run" / "trm" / "metrics.jsonl").read_text() == metrics


def test_slot_streams_do_not_depend_on_how_slots_are_split():
    from reasonkit.trm.schema import SudokuSettings

    task = TRMTask(sudoku=SudokuSettings(size=6, min_clues=12), train_size=48, test_size=16, augment=True)
    data, kind = puzzle_splits(task)["train"], PuzzleKind(task)
    whole = SlotFeed(data, kind, 8, range(0, 8), seed=3, augment=True)
    half = SlotFeed(data, kind, 8, range(4, 8), seed=3, augment=True)
    for slot in range(4, 8):
        for count in range(10):  # past an epoch of 48 puzzles: 8 slots x 10 draws = 80
            a, b = whole.example(slot, count, 6, 0.5), half.example(slot, count, 6, 0.5)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    # Without augmentation the 8 slots' first 6 draws are the 48 puzzles, each once.
    plain = SlotFeed(data, kind, 8, range(0, 8), seed=3, augment=False)
    drawn = {tuple(plain.example(s, c, 6, 0)[0].tolist()) for c in range(6) for s in range(8)}
    assert drawn == {tuple(p.tolist()) for p in data.inputs}
    # An augmented draw is still a puzzle whose only solution is its label.
    from reasonkit.tasks.sudoku import SHAPES, solve

    puzzle, label, _ = whole.example(0, 0, 6, 0)
    assert solve(tuple(puzzle.tolist()), SHAPES[6], limit=2)[0] == [tuple(label.tolist())]


def test_held_out_puzzles_differ_from_training_ones_under_the_symmetries():
    from reasonkit.tasks.sudoku import SHAPES, symmetry_key
    from reasonkit.trm.schema import SudokuSettings

    task = TRMTask(
        sudoku=SudokuSettings(size=6),
        train_size=60,
        test_size=20,
        harder=SudokuSettings(size=6, max_clues=9),
        harder_size=5,
    )
    splits = puzzle_splits(task)
    key = lambda s: {symmetry_key(tuple(p.tolist()), SHAPES[6]) for p in splits[s].inputs}  # noqa: E731
    assert (
        len(key("test")) == 20
        and not key("test") & key("train")
        and not key("harder") & (key("train") | key("test"))
    )
    assert all((p != 0).sum() <= 9 for p in splits["harder"].inputs)


def test_schema_is_strict_and_refuses_an_ema_that_keeps_the_init(tmp_path):
    bad = recipe_file(tmp_path, {"trm": trm_stage(network={**SMALL, "recurions": 3})})
    with pytest.raises(ConfigError, match="did you mean 'recursions'"):
        load_recipe(bad)
    slow_ema = recipe_file(tmp_path, {"trm": trm_stage(ema_decay=0.999, max_steps=1000)})
    with pytest.raises(ConfigError, match="initial weights"):
        load_recipe(slow_ema)
    ok = load_recipe(recipe_file(tmp_path, {"trm": trm_stage(**{"halting": False, "ema": False})}))
    assert ok.stages["trm"].network.hidden_size == 32


def test_dry_run_builds_the_network_and_trains_nothing(tmp_path, capsys):
    path = recipe_file(tmp_path, {"trm": trm_stage()})
    assert main(["run", str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "layers per supervision step" in printed and "supervision_steps" in printed
    assert not (tmp_path / "run").exists()
