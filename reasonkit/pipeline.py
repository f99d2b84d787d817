"""Runs a recipe's stages in the order written, each stage's model feeding the next.

Writes into the recipe's output directory: ``recipe.yaml`` (resolved), one folder per stage, and
``summary.json`` (every stage's metrics and the wall time), rewritten after each stage so a run
stopped part-way keeps what it finished.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import yaml

from reasonkit.config import EvalStage, Recipe, SFTStage, to_dict
from reasonkit.data import load_examples
from reasonkit.format import format_completion
from reasonkit.metrics import format_table
from reasonkit.stage import StageContext

log = logging.getLogger(__name__)
TOKENIZER_CORPUS_SIZE = 5000  # examples the tiny tokenizer is trained on


def run_recipe(recipe: Recipe) -> dict:
    from accelerate import PartialState

    state = PartialState()
    started = time.time()
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base_model = recipe.model.path or str(out / "base_model")
    if state.is_main_process:
        (out / "recipe.yaml").write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
        if recipe.model.tiny is not None:
            build_tiny_base_model(recipe, Path(base_model))
    state.wait_for_everyone()

    summary = {"recipe": recipe.output_dir, "stages": {}}
    outputs: dict[str, str] = {}  # stage name -> its saved model
    for name, stage in recipe.stages.items():
        ctx = StageContext(recipe, name, out / name, init_path=base_model, is_main_process=state.is_main_process)
        ctx.directory.mkdir(parents=True, exist_ok=True)
        stage_started = time.time()
        print(f"\n=== stage {name} ({stage.type}) ===", flush=True)
        if isinstance(stage, SFTStage):
            from reasonkit.sft import run_sft

            ctx.init_path = base_model if stage.init == "model" else outputs[stage.init]
            metrics = run_sft(ctx, stage)
            outputs[name] = str(ctx.model_dir)
        elif isinstance(stage, EvalStage):
            from reasonkit.evaluate import run_eval

            targets = stage.models or list(outputs)
            metrics = run_eval(ctx, stage, {t: base_model if t == "model" else outputs[t] for t in targets})
        metrics["wall_seconds"] = round(time.time() - stage_started, 1)
        summary["stages"][name] = {"type": stage.type, **metrics}
        summary["wall_seconds"] = round(time.time() - started, 1)
        if state.is_main_process:
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if state.is_main_process:
        print_summary(summary)
    return summary


def build_tiny_base_model(recipe: Recipe, directory: Path) -> None:
    """Train a tokenizer on the recipe's own training text and save a randomly initialised model with it."""
    from reasonkit.models import save_tiny_model

    need_trace = any(isinstance(s, SFTStage) and s.traces for s in recipe.stages.values())
    examples, _ = load_examples(recipe.data, "train", need_trace=need_trace)
    sample = examples[:TOKENIZER_CORPUS_SIZE]
    corpus = [ex.prompt for ex in sample] + [format_completion(ex.trace, ex.answer) for ex in sample]
    tiny = recipe.model.tiny
    save_tiny_model(directory, corpus, seed=recipe.seed, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers,
                    num_heads=tiny.num_heads, intermediate_size=tiny.intermediate_size)


def print_summary(summary: dict) -> None:
    rows = []
    for name, metrics in summary["stages"].items():
        if metrics["type"] == "eval":
            for model, result in metrics["models"].items():
                rows.append({"stage": name, "model": model, "accuracy": result["accuracy"], "n": result["n"],
                             "format_errors": result["format_errors"], "seconds": metrics["wall_seconds"]})
        else:
            rows.append({"stage": name, "model": "(trained)", "train_loss": metrics.get("train_loss"),
                         "steps": metrics.get("steps"), "seconds": metrics["wall_seconds"]})
    columns = ["stage", "model", "accuracy", "n", "format_errors", "train_loss", "steps", "seconds"]
    print("\n" + format_table(rows, columns))
    print(f"\ntotal wall time: {summary['wall_seconds']:.0f} s; summary: {Path(summary['recipe']) / 'summary.json'}")
