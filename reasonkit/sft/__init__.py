"""The distillation stage (``type: sft``): schema, stage entry, and the trainer (TRL's SFTTrainer)."""
