"""The ``type: sft`` stage as the stage table sees it: its data check, objective, summary row and run.

Light: the trainer (TRL, transformers) is imported only when the stage runs.
"""

from __future__ import annotations

from reasonkit.sft.schema import SFTStage, objective, validate
from reasonkit.stage import StageContext, StageType, training_row


def check_data(recipe, data, rows: int, stage: SFTStage) -> list[str]:
    """--dry-run: the first rows of the training data, read through the format contract."""
    from reasonkit.data import load_examples
    from reasonkit.data.conversations import load_conversations

    if stage.tools is not None:
        conversations, report = load_conversations(data, "train")
        return [f"train data: {len(conversations)} of {report.rows} rows read are conversations to train on"]
    examples, report = load_examples(data, "train", need_trace=stage.traces)
    return [f"train data: {len(examples)} of {report.rows} rows read follow the format contract"]


def summary_rows(name: str, summary: dict) -> list[dict]:
    return [training_row(name, summary)]


def run(ctx: StageContext, stage: SFTStage, resume: bool = False) -> dict:
    from reasonkit.sft.trainer import run_sft

    return run_sft(ctx, stage, resume=resume)


STAGE = StageType(SFTStage, validate, check_data, objective, summary_rows, run)
