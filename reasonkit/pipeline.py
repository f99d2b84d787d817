"""Runs a recipe's stages in the order written, each stage's model feeding the next.

Writes into the recipe's output directory: ``recipe.yaml`` (resolved), one folder per stage, and
``summary.json`` (every stage's metrics and the wall time), rewritten after each stage so a run
stopped part-way keeps what it finished. With ``resume``, finished stages (those with a ``done.json``)
are skipped and an unfinished one continues from its latest checkpoint. With a tracker in
``report_to`` (wandb), each stage runs inside its own tracker run: the resolved recipe and the stage's
objective as its config, the stage's metrics as they are logged, and its summary at the end.
The libraries' log records go to ``run.log`` there (reasonkit.logs).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import yaml

from reasonkit.checkpoints import checkpoint_step, latest_checkpoint
from reasonkit.config import Recipe, to_dict
from reasonkit.data import load_examples
from reasonkit.logs import write_library_log
from reasonkit.metrics import check_trackers, format_table, tracked_stage
from reasonkit.run_dir import DONE_FILE, RECIPE_FILE, prepare_output_dir
from reasonkit.stage import StageContext
from reasonkit.stages import STAGES
from rewards.contract import format_completion

log = logging.getLogger(__name__)
TOKENIZER_CORPUS_SIZE = 5000  # examples the tiny tokenizer is trained on
# The run's summary table, in this order; each stage's rows fill the columns they have.
SUMMARY_COLUMNS = [
    "stage",
    "model",
    "accuracy",
    "CI",
    "n",
    "tokens",
    "thoughts",
    "iterations",
    "tool_calls",  # per completion, with tools
    "failed_calls",  # the share of those calls that gave the model an error
    "format_errors",
    "train_loss",
    "reward",
    "steps",
    "seconds",
]


def run_recipe(recipe: Recipe, resume: bool = False, overwrite: bool = False) -> dict:
    from reasonkit.launch import process_state

    state = process_state()
    started = time.time()
    check_trackers(recipe.report_to)  # a missing package stops the run here, before any work
    out = Path(recipe.output_dir)
    base_model = recipe.model.path or str(out / "base_model")
    prepare_output_dir(out, recipe, resume, overwrite, state)
    if state.is_main_process:
        (out / RECIPE_FILE).write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
        uses_lm = any(STAGES.get(s.type).language_model for s in recipe.stages.values())
        if uses_lm and recipe.model.tiny is not None and not (resume and Path(base_model).exists()):
            build_tiny_base_model(recipe, Path(base_model))
    state.wait_for_everyone()
    write_library_log(out / "run.log")  # the libraries' records, off the console (reasonkit.logs)

    summary = {"recipe": recipe.output_dir, "stages": {}}
    models = {"model": base_model}  # the models saved so far, by the names recipes use
    for name, stage in recipe.stages.items():
        entry = STAGES.get(stage.type)
        ctx = StageContext(
            recipe,
            name,
            out / name,
            init_path=models[stage.init] if entry.trains else base_model,
            is_main_process=state.is_main_process,
            models=dict(models),
        )
        ctx.directory.mkdir(parents=True, exist_ok=True)
        if entry.trains:
            models[name] = str(ctx.model_dir)
        done = ctx.directory / DONE_FILE
        if resume and done.exists():
            print(f"\n=== stage {name} ({stage.type}): done earlier, skipped ===", flush=True)
            summary["stages"][name] = json.loads(done.read_text())
            continue
        print(f"\n=== stage {name} ({stage.type}){_resuming(ctx) if resume else ''} ===", flush=True)
        stage_started = time.time()
        with _tracker_run(recipe, name, stage, out, state.is_main_process) as tracker:
            metrics = entry.run(ctx, stage, resume=resume)
            state.wait_for_everyone()
            summary["stages"][name] = {
                "type": stage.type,
                **metrics,
                "wall_seconds": round(time.time() - stage_started, 1),
            }
            if tracker:
                tracker.summarize(summary["stages"][name])
        summary["wall_seconds"] = round(time.time() - started, 1)
        if state.is_main_process:
            done.write_text(json.dumps(summary["stages"][name], indent=2))
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["wall_seconds"] = round(time.time() - started, 1)
    if state.is_main_process:
        print_summary(summary)
    return summary


def _resuming(ctx: StageContext) -> str:
    """Where a resumed stage continues from, for its banner (the stage itself picks the same checkpoint)."""
    latest = latest_checkpoint(ctx.directory / "checkpoints")
    return f": resuming from step {checkpoint_step(latest)} ({latest})" if latest else ""


def _tracker_run(recipe: Recipe, name: str, stage, out: Path, is_main_process: bool):
    """The stage's run in the recipe's trackers (main process only), config: the recipe and the objective."""
    report_to = recipe.report_to if is_main_process else []
    config = (
        {"recipe": to_dict(recipe), "stage": name, "objective": STAGES.get(stage.type).objective(stage)}
        if report_to
        else {}
    )
    return tracked_stage(
        report_to, out, name=f"{out.name}/{name}", group=out.name, job_type=stage.type, config=config
    )


def build_tiny_base_model(recipe: Recipe, directory: Path) -> None:
    """Train a tokenizer on the recipe's own training text and save a randomly initialised model with it."""
    from reasonkit.models import save_tiny_model

    # the traces too when a stage trains on them (sft's `traces`)
    need_trace = any(getattr(s, "traces", False) for s in recipe.stages.values())
    examples, _ = load_examples(recipe.data, "train", need_trace=need_trace)
    sample = examples[:TOKENIZER_CORPUS_SIZE]
    corpus = [ex.prompt for ex in sample] + [format_completion(ex.trace, ex.answer) for ex in sample]
    corpus += tool_conversation_text(recipe, corpus)
    tiny = recipe.model.tiny
    save_tiny_model(
        directory,
        corpus,
        seed=recipe.seed,
        hidden_size=tiny.hidden_size,
        num_layers=tiny.num_layers,
        num_heads=tiny.num_heads,
        intermediate_size=tiny.intermediate_size,
        recurrent=tiny.recurrent,
    )


def tool_conversation_text(recipe: Recipe, corpus: list[str]) -> list[str]:
    """The conversations an sft stage with tools trains on, as the chat template renders them (calls, tool
    results and the tools' line), so that a call's JSON is a few tokens rather than one per character."""
    from reasonkit.data.conversations import load_conversations
    from reasonkit.models import train_tiny_tokenizer
    from reasonkit.tools.toolbox import Toolbox

    stages = [(name, s) for name, s in recipe.stages.items() if s.type == "sft" and s.tools is not None]
    if not stages:
        return []
    name, stage = stages[0]
    toolbox = Toolbox(stage.tools, f"stages.{name}.tools")
    conversations, _ = load_conversations(recipe.data, "train")
    renderer = train_tiny_tokenizer(corpus)  # only its chat template is used, not its vocabulary
    return [
        renderer.apply_chat_template(c.messages, tools=toolbox.schemas(c.row), tokenize=False)
        for c in conversations[:TOKENIZER_CORPUS_SIZE]
    ]


def print_summary(summary: dict) -> None:
    """The run's table (each stage's rows, as its stage type makes them), what each stage adds below it,
    and where the summary is."""
    rows, reports = [], []
    for name, metrics in summary["stages"].items():
        entry = STAGES.get(metrics["type"])
        rows += entry.summary_rows(name, metrics)
        reports.append(entry.report(name, metrics))
    print("\n" + format_table(rows, SUMMARY_COLUMNS))
    for text in filter(None, reports):
        print("\n" + text)
    print(
        f"\ntotal wall time: {summary['wall_seconds']:.0f} s; summary: {Path(summary['recipe']) / 'summary.json'}"
    )
