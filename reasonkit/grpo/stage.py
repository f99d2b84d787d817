"""The ``type: grpo`` stage as the stage table sees it: its data check, objective, summary and run.

Light: the trainer is imported only when the stage runs.
"""

from __future__ import annotations

from reasonkit.grpo.schema import GRPOStage, validate
from reasonkit.stage import StageContext, StageType, first_to_last, training_row


def objective(stage: GRPOStage) -> dict:
    """What the stage optimises (grpo/objective.py; imported here: it reads the engine and rewards)."""
    from reasonkit.grpo.objective import stage_objective

    return stage_objective(stage)


def check_data(recipe, data, rows: int, stage: GRPOStage) -> list[str]:
    """--dry-run: the first prompt rows, the rewards loaded, and the columns they and metrics_by need."""
    from reasonkit.data import load_prompt_rows, rl_split
    from reasonkit.grpo.scoring import check_columns, load_rewards
    from reasonkit.grpo.step_metrics import check_metrics_by

    split = rl_split(data)
    prompt_rows = load_prompt_rows(data, split)
    weighted = load_rewards(stage.rewards)
    check_columns(weighted, set(prompt_rows[0]))
    check_metrics_by(stage.metrics_by, prompt_rows)
    names = ", ".join(f"{r.name} x{r.weight}" for r in weighted)
    return [
        f"{split} prompts: {len(prompt_rows)} rows read, with columns {sorted(prompt_rows[0])}",
        f"rewards: {names}",
    ]


def summary_rows(name: str, summary: dict) -> list[dict]:
    return [training_row(name, summary, reward=first_to_last(summary, "reward"))]


def report(name: str, summary: dict) -> str:
    """The reward per value of the ``metrics_by`` column: which prompts' rewards moved, where the whole
    batch's mean may barely move."""
    lines = []
    for key, by_value in summary.items():
        if key.startswith("by_"):
            parts = [f"{value} {first_to_last(m, 'reward')}" for value, m in by_value.items()]
            lines.append(f"{name} reward by {key[3:]} (first -> last tenth of the steps): {', '.join(parts)}")
    return "\n".join(lines)


def run(ctx: StageContext, stage: GRPOStage, resume: bool = False) -> dict:
    from reasonkit.grpo.trainer import run_grpo

    return run_grpo(ctx, stage, resume=resume)


STAGE = StageType(GRPOStage, validate, check_data, objective, summary_rows, run, report)
