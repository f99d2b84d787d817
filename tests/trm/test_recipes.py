"""The shipped TRM recipes: the GPU ones dry-run, and take a few CPU steps on local puzzle files (no hub
here) with their own network and optimiser settings."""

import random

import pytest

from reasonkit.cli import main
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import load_recipe
from reasonkit.tasks.sudoku import SHAPES, generate

# A GPU recipe cut to two CPU steps on two puzzles, evaluated at 1 and 2 supervision steps.
TWO_STEPS = [
    "stages.trm.batch_size=2",
    "stages.trm.max_steps=2",
    "stages.trm.ema_decay=null",
    "stages.trm.warmup_steps=1",
    "stages.trm.eval_steps=[1,2]",
    "stages.trm.save_steps=null",
    "report_to=[jsonl]",
]


@pytest.fixture(scope="module")
def sudoku_extreme_files(tmp_path_factory):
    """Sudoku-Extreme-shaped csv files (source, question, answer, rating) of generated 9x9 puzzles."""
    folder = tmp_path_factory.mktemp("extreme")
    pairs = generate(SHAPES[9], 6, random.Random(0))
    text = lambda grid: "".join(str(v) if v else "." for v in grid)  # noqa: E731
    for name, rows in (("train.csv", pairs[:4]), ("test.csv", pairs[4:])):
        (folder / name).write_text(
            "source,question,answer,rating\n" + "".join(f"gen,{text(p)},{text(s)},0\n" for p, s in rows)
        )
    return folder


def test_sudoku_extreme_recipe_is_the_reference_setting():
    stage = load_recipe("recipes/trm_sudoku_extreme.yaml").stages["trm"]
    net = stage.network
    assert (net.hidden_size, net.block, net.latent_steps, net.recursions, net.num_layers) == (
        512,
        "mlp_t",
        6,
        3,
        2,
    )
    assert (stage.supervision_steps, stage.learning_rate, stage.weight_decay, stage.ema) == (
        16,
        1e-4,
        1.0,
        True,
    )
    assert (
        stage.task.train_file.path == "sapientinc/sudoku-extreme" and stage.task.train_file.max_rows == 1000
    )
    assert stage.task.augment


def test_sudoku_extreme_recipe_takes_cpu_steps_on_local_files(tmp_path, sudoku_extreme_files, capsys):
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        f"stages.trm.task.train_file.path={sudoku_extreme_files / 'train.csv'}",
        f"stages.trm.task.test_file.path={sudoku_extreme_files / 'test.csv'}",
        *TWO_STEPS,
    ]
    assert main(["run", "recipes/trm_sudoku_extreme.yaml", "--dry-run", *overrides]) == 0
    summary = run_recipe(load_recipe("recipes/trm_sudoku_extreme.yaml", overrides))
    trm = summary["stages"]["trm"]
    assert trm["steps"] == 2 and trm["n"] == 2 and trm["effective_depth"] == 3 * 7 * 2


def test_maze_recipe_takes_cpu_steps(tmp_path):
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        "stages.trm.task.maze.side=9",  # the recipe's 29 costs minutes of attention on CPU
        "stages.trm.task.train_size=8",
        "stages.trm.task.test_size=4",
        "stages.trm.network.hidden_size=64",
        *TWO_STEPS,
    ]
    recipe = load_recipe("recipes/trm_maze.yaml", overrides)
    assert recipe.stages["trm"].network.block == "attention"
    summary = run_recipe(recipe)
    assert summary["stages"]["trm"]["n"] == 4
    assert 0 <= summary["stages"]["trm"]["valid"] <= 1


def test_demo_recipe_validates_with_the_three_models():
    recipe = load_recipe("recipes/demo/sudoku_trm.yaml")
    assert list(recipe.stages) == ["trm", "single_pass", "unshared"]
    modes = [s.network.mode for s in recipe.stages.values()]
    assert modes == ["trm", "single_pass", "unshared"]
    budgets = {(s.max_steps, s.batch_size) for s in recipe.stages.values()}
    assert len(budgets) == 1  # the same training budget
    tasks = {repr(s.task) for s in recipe.stages.values()}
    assert len(tasks) == 1  # the same puzzles


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_ablation_recipe_is_the_demo_with_one_line_changed_per_stage():
    import dataclasses

    demo = flat(dataclasses.asdict(load_recipe("recipes/demo/sudoku_trm.yaml").stages["trm"]))
    stages = load_recipe("recipes/demo/sudoku_trm_ablations.yaml").stages
    changed = {}
    for name, stage in stages.items():
        settings = flat(dataclasses.asdict(stage))
        changed[name] = {k for k in settings if settings[k] != demo[k]}
    assert changed == {
        "trm": set(),
        "separate_networks": {"network.separate_networks"},
        "four_layers": {"network.num_layers"},
        "attention": {"network.block"},
        "one_step_gradient": {"network.gradient"},
        "no_halting": {"halting"},
    }
