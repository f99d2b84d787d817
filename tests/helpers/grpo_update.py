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


def fixed_rollouts(run, rows, truncated: bool = False, tools: bool = False):
    """The fixed completions; ``tools``: each opens with a calculator call and its result (as the tool
    loop appends it), so the model's tokens are split by a tool turn."""
    from reasonkit.rollout import Rollout

    tok, rollouts = run.tokenizer, []
    for index, row in enumerate(rows):
        tool_schemas = run.generation.toolbox.schemas(row) if tools else None
        prompt_ids = tok(run.fmt.render(tok, row["prompt"], tools=tool_schemas), add_special_tokens=False)[
            "input_ids"
        ]
        a, b = row["a"], row["b"]
        for template in ALL_RIGHT if (a, b) == PROMPTS[-1] else COMPLETIONS:
            text = template.format(a=a, b=b, ab=a * b, wrong=a * b + 10)
            ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rollout = Rollout(index, prompt_ids, ids, None, text, truncated=truncated)
            if tools:
                with_tool_turn(tok, rollout, a, b)
            rollouts.append(rollout)
    return rollouts


def tool_turn_ids(tok, a: int, b: int) -> tuple[list[int], list[int]]:
    """A turn calling the calculator for ``a * b`` (ended by the stop token), and its result's tokens."""
    from reasonkit.tools.template import tool_suffix_ids

    call = f'<think><tool_call>{{"name": "calculator", "arguments": {{"expression": "{a}*{b}"}}}}</tool_call>'
    result = [{"role": "tool", "name": "calculator", "content": str(a * b)}]
    return tok(call, add_special_tokens=False)["input_ids"] + [tok.eos_token_id], tool_suffix_ids(tok, result)


def with_tool_turn(tok, rollout, a: int, b: int) -> None:
    """The completion as the tool loop makes it: <think>, the call, its result, then the rest of it."""
    from reasonkit.tools.loop import ToolUse

    call, result = tool_turn_ids(tok, a, b)
    rest = tok(rollout.text.removeprefix("<think>"), add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id
    ]
    rollout.completion_ids = call + result + rest
    rollout.tools = ToolUse(mask=[1] * len(call) + [0] * len(result) + [1] * len(rest), calls=["calculator"])
    rollout.text = tok.decode(rollout.completion_ids[:-1], skip_special_tokens=True)


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
    weights after the last (``truncated=true`` marks every completion as cut at max_new_tokens;
    ``tools=true`` gives each completion a calculator turn, its result out of the loss)."""
    skip_deepspeed_shm_build()
    from pathlib import Path

    truncated, tools = "truncated=true" in overrides, "tools=true" in overrides
    overrides = [o for o in overrides if o not in ("truncated=true", "tools=true")]
    run = make_run(model_dir, out_dir, overrides + (["tools={functions: [calculator]}"] if tools else []))
    rows = this_process_rows(run)
    steps = [run.learn(rows, fixed_rollouts(run, rows, truncated, tools)) for _ in range(run.stage.max_steps)]
    weights = run.accelerator.get_state_dict(run.policy)
    if run.accelerator.is_main_process:
        weights = {name: tensor.float().cpu() for name, tensor in weights.items()}
        torch.save({"metrics": steps[-1], "steps": steps, "weights": weights}, Path(out_dir) / "result.pt")
    run.scorer.close()


if __name__ == "__main__":
    from reasonkit.launch import end_process

    main(sys.argv[1], sys.argv[2], sys.argv[3:])
    end_process(0)  # as `reasonkit run` ends
