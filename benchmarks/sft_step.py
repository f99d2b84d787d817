"""One side of the SFT benchmark: reasonkit's distillation stage or TRL's SFTTrainer with its defaults,
on the same (prompt, trace, answer) examples, no packing on either side. Counts what each batch holds
(real tokens and padding) and the seconds of each optimizer step.

    python benchmarks/sft_step.py --side reasonkit --model DIR --steps 40 [--length-grouped]
    python benchmarks/sft_step.py --side trl --model DIR --steps 40

Examples: the arithmetic task's traces with a fifth asked as quick questions, 70% of which the teacher
answers without the working, so lengths vary (about 3x between short and long), as distilled traces do.
Both sides: batch 32, float32, no gradient checkpointing, AdamW at the demo's rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import median, peak_rss_mib, run_reasonkit_stage, write_result

TASK = dict(digits=2, test_size=100, quick_share=0.2, shortcut_rate=0.7)


class BatchCounter:
    """Wraps transformers' Trainer.training_step (both sides train through it): tokens and timing."""

    def __init__(self):
        self.steps, self.started = [], None

    def install(self) -> None:
        from transformers import Trainer

        original = Trainer.training_step
        counter = self

        def training_step(trainer, model, inputs, *args, **kwargs):
            started = time.time()
            loss = original(trainer, model, inputs, *args, **kwargs)
            mask = inputs["attention_mask"]
            counter.steps.append(
                {"seconds": time.time() - started, "tokens": int(mask.sum()), "slots": mask.numel()}
            )
            return loss

        Trainer.training_step = training_step


def run_reasonkit(args, out_dir: Path) -> None:
    stage = {"type": "sft", "batch_size": args.batch_size, "max_steps": args.steps, "learning_rate": 3e-3,
             "max_length": 128, "logging_steps": 10, "length_grouped": args.length_grouped}  # fmt: skip
    run_reasonkit_stage(args.model, out_dir, "sft", stage, TASK)


def run_trl(args, out_dir: Path) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from reasonkit.data import prompt_format
    from reasonkit.models import load_model, load_tokenizer
    from reasonkit.tasks import arithmetic_splits
    from rewards.contract import format_completion

    tokenizer = load_tokenizer(args.model)
    fmt = prompt_format(tokenizer, None)
    rows = [
        {"prompt": fmt.render(tokenizer, p.prompt), "completion": format_completion(p.trace, p.answer)}
        for p in arithmetic_splits(**TASK)["train"]
    ]
    config = SFTConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=3e-3,
        bf16=False,
        gradient_checkpointing=False,
        packing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=load_model(args.model),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["reasonkit", "trl"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length-grouped", action="store_true", help="reasonkit's length_grouped")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    counter = BatchCounter()
    counter.install()
    with tempfile.TemporaryDirectory() as tmp:
        (run_reasonkit if args.side == "reasonkit" else run_trl)(args, Path(tmp))
    timed = counter.steps[args.warmup :]
    seconds = sum(s["seconds"] for s in timed)
    write_result(
        args.out,
        {
            "side": args.side,
            "length_grouped": args.length_grouped,
            "tokens_per_second": sum(s["tokens"] for s in timed) / seconds,
            "padding_share": 1 - sum(s["tokens"] for s in timed) / sum(s["slots"] for s in timed),
            "median_step_seconds": median([s["seconds"] for s in timed]),
            "tokens_per_example": sum(s["tokens"] for s in timed) / (len(timed) * args.batch_size),
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
