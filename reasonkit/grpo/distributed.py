"""What the GRPO loop needs to run on several processes (DDP or DeepSpeed ZeRO, through accelerate).

Each process samples its share of the step's prompts with their whole groups, so a group never
spans processes; the rewards are then gathered, so advantages, zero-variance skipping and metrics
see the whole batch. Each process normalises its loss by the whole batch's counts and multiplies
it by the number of processes, because DDP and DeepSpeed average gradients over processes: the
update is the one a single process would make on the whole batch.
"""

from __future__ import annotations

import torch

from reasonkit.config import ConfigError
from reasonkit.grpo.schema import GRPOStage


def prompt_shard(indices: list[int], rank: int, world: int) -> list[int]:
    """This process's contiguous share of the step's prompts (gathering keeps rank order = batch order)."""
    per_rank = len(indices) // world
    return indices[rank * per_rank : (rank + 1) * per_rank]


def sum_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Each value summed over every process."""
    if accelerator.num_processes == 1:
        return values
    summed = accelerator.reduce(torch.tensor(list(values.values()), device=accelerator.device), "sum")
    return dict(zip(values, summed.tolist(), strict=True))


def check_world(stage: GRPOStage, name: str, world: int) -> None:
    if stage.prompts_per_step % world:
        larger = (stage.prompts_per_step // world + 1) * world
        raise ConfigError(
            f"stages.{name}.prompts_per_step={stage.prompts_per_step} does not divide across {world} processes: "
            f"set it to a multiple of {world} (e.g. {larger}) or launch a number of processes that divides it"
        )


def fit_deepspeed_config(
    config: dict, stage: GRPOStage, name: str, world: int, engine_has_own_weights: bool
) -> None:
    """Fill the DeepSpeed config's `auto` values from the recipe, and refuse what contradicts it.

    The recipe owns the optimizer, the schedule and gradient clipping; GRPO accumulates gradients over
    its own token-budget micro-batches, so DeepSpeed must not accumulate on top.
    """
    problems = []
    for block in ("optimizer", "scheduler"):
        if block in config:
            problems.append(
                f"the DeepSpeed config has a `{block}` block; remove it: stages.{name} sets the "
                "optimizer (AdamW from learning_rate, adam_beta1/2, weight_decay) and lr_scheduler"
            )
    clipping = config.get("gradient_clipping", "auto")
    if clipping != "auto" and float(clipping) != stage.max_grad_norm:
        problems.append(
            f"the DeepSpeed config's gradient_clipping={clipping} contradicts stages.{name}.max_grad_norm="
            f"{stage.max_grad_norm}; set one of them to the other (or gradient_clipping: auto)"
        )
    accumulation = config.get("gradient_accumulation_steps", "auto")
    if accumulation not in ("auto", 1):
        problems.append(
            f"the DeepSpeed config's gradient_accumulation_steps={accumulation}: GRPO accumulates over "
            f"micro-batches of stages.{name}.token_budget tokens itself; set it to 1 (or auto) and raise "
            "prompts_per_step for a larger batch"
        )
    if config.get("fp16", {}).get("enabled") in (True, "true"):
        problems.append("the DeepSpeed config enables fp16: use bf16 (mixed_precision: bf16) or float32")
    if engine_has_own_weights and stage.lora and config.get("zero_optimization", {}).get("stage") == 3:
        problems.append(
            f"stages.{name}: LoRA with engine={stage.engine} under ZeRO-3 is not supported yet (the adapters "
            "would be merged into sharded weights): use ZeRO-2, or engine: transformers"
        )
    if problems:
        raise ConfigError("the launch contradicts the recipe:\n" + "\n".join(f"  - {p}" for p in problems))
    config["gradient_clipping"] = stage.max_grad_norm
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # the final save gathers the shards
    config["gradient_accumulation_steps"] = 1
    # DeepSpeed insists on batch sizes; they do not matter, the loop feeds it micro-batches of its own.
    config["train_micro_batch_size_per_gpu"] = 1
    config["train_batch_size"] = world
