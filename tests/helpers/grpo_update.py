"""GRPO updates on fixed completions, under whatever `accelerate launch` started it.

    python tests/helpers/grpo_update.py MODEL_DIR OUT_DIR [key=value | model.key=value ...]
    accelerate launch --config_file recipes/accelerate/zero2.yaml --num_processes 2 ... (same arguments)

The step's prompts and each prompt's completions are fixed (some right, some wrong), so every launch
sees the same batch; each process takes its share of the prompts as the trainer does. Process 0
writes OUT_DIR/result.pt: each update's metrics and the policy's weights after the last, gathered.
Tests also import it to run the same updates in their own process.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def skip_deepspeed_shm_build() -> None:
    """DeepSpeed compiles a shared-memory op on every cold start on CPU (1-2 minutes); gloo needs none."""
    try:
        import deepspeed.comm.torch  # noqa: F401
    except ImportError:
        return
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


PROMPTS = [(12, 34), (56, 78), (23, 45), (67, 89)]  # B = 4
# G = 4 completions per prompt: right, wrong, right with a different trace, no answer at all; the
# last prompt's are all right (a zero-variance group: skipped when beta = 0, so processes differ).
COMPLETIONS = [
    "<think>{a} * {b}</think>{ab}",
    "<think>{a} * {b} = ?</think>{wrong}",
    "<think>{ab}</think>{ab}",
    "<think>{a}</think>",
]
ALL_RIGHT = ["<think>{a} * {b}</think>{ab}"] * len(COMPLETIONS)


def fixed_rollouts(run, rows, truncated: bool = False):
    from reasonkit.rollout import Rollout

    tok, rollouts = run.tokenizer, []
    for index, row in enumerate(rows):
        prompt_ids = tok(run.fmt.render(tok, row["prompt"]), add_special_tokens=False)["input_ids"]
        a, b = row["a"], row["b"]
        for template in ALL_RIGHT if (a, b) == PROMPTS[-1] else COMPLETIONS:
            text = template.format(a=a, b=b, ab=a * b, wrong=a * b + 10)
            ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rollouts.append(Rollout(index, prompt_ids, ids, None, text, truncated=truncated))
    return rollouts


def make_run(model_dir: str, out_dir: str, overrides: list[str]):
    """The GRPO run, set up: ``stage.key=value`` overrides, or ``model.key=value`` for the model section."""
    from pathlib import Path

    import yaml

    from reasonkit.grpo.trainer import GRPORun
    from reasonkit.launch import process_state
    from reasonkit.recipe import build_recipe
    from reasonkit.stage import StageContext

    stage = {
        "rewards": [{"name": "exact_answer"}],
        "prompts_per_step": len(PROMPTS),
        "num_generations": len(COMPLETIONS),
        "learning_rate": 1e-3,
        "beta": 0.1,
        "max_steps": 1,
        "num_iterations": 2,  # the second pass has ratios != 1 and a KL term
        "engine": "transformers",
        "reward_workers": 0,
    }
    model = {"path": model_dir}
    for item in overrides:
        key, _, value = item.partition("=")
        section, key = (model, key.removeprefix("model.")) if key.startswith("model.") else (stage, key)
        section[key] = yaml.safe_load(value)
    recipe = build_recipe(
        {"output_dir": out_dir, "model": model, "data": {"task": "arithmetic"}, "stages": {"grpo": stage}}
    )
    state = process_state()
    ctx = StageContext(recipe, "grpo", Path(out_dir), model_dir, is_main_process=state.is_main_process)
    run = GRPORun(ctx, recipe.stages["grpo"])
    run.setup()
    return run


def this_process_rows(run) -> list[dict]:
    from reasonkit.grpo.distributed import prompt_shard

    everyone = [{"prompt": f"What is {a} * {b}?", "answer": str(a * b), "a": a, "b": b} for a, b in PROMPTS]
    return [everyone[i] for i in prompt_shard(list(range(len(everyone))), run.rank, run.world)]


def main(model_dir: str, out_dir: str, overrides: list[str]) -> None:
    """``max_steps`` updates, each on the same fixed batch; process 0 saves every step's metrics and the
    weights after the last (``truncated=true`` marks every completion as cut at max_new_tokens)."""
    skip_deepspeed_shm_build()
    from pathlib import Path

    truncated = "truncated=true" in overrides
    run = make_run(model_dir, out_dir, [o for o in overrides if o != "truncated=true"])
    rows = this_process_rows(run)
    steps = [run.learn(rows, fixed_rollouts(run, rows, truncated)) for _ in range(run.stage.max_steps)]
    weights = run.accelerator.get_state_dict(run.policy)
    if run.accelerator.is_main_process:
        weights = {name: tensor.float().cpu() for name, tensor in weights.items()}
        torch.save({"metrics": steps[-1], "steps": steps, "weights": weights}, Path(out_dir) / "result.pt")
    run.scorer.close()


if __name__ == "__main__":
    from reasonkit.launch import end_process

    main(sys.argv[1], sys.argv[2], sys.argv[3:])
    end_process(0)  # as `reasonkit run` ends
