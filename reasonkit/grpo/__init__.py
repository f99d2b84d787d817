"""The GRPO stage: our own loop on accelerate, the math in reasonkit.algorithms."""
