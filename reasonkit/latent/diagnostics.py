"""What the continuous thoughts hold: each one decoded to its nearest vocabulary tokens.

A thought is a last hidden state, the very vector the language-model head reads, so its nearest tokens
are the head's top tokens for it (for a thought rescaled to the embeddings' norm, the same: the head is
linear). For thought j (0-based) of a problem, the trace step it stands for is step j // c; the figures:

- ``result_hit``: the share of problems whose thought's top token is the first token of the last number
  of that step (its result: does thought 1 decode to the first partial product?),
- ``result_hit_other_problem``: the same against another problem's step result (the chance level),
- ``step_hit``: the share whose top token is any token of that step,
- ``norm``: the thought's mean L2 norm, next to the input embeddings' (``embedding_norm``),
- ``top_tokens``: the most frequent top tokens, and a few problems' top-5 per thought.

Written per evaluated curriculum stage to ``diagnostics/<model>.json``; ``plot_thoughts`` draws them all.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch

from reasonkit.latent.engine import LatentSettings, thought_prompts
from reasonkit.latent.thoughts import chain_forward, embedding_scale, thought_token_ids

SHOWN_PROBLEMS = 5


def result_token(tokenizer, step: str) -> int | None:
    """The first token of the step's last number (its result), or None when it has no number.

    >>> characters = lambda text, add_special_tokens: {"input_ids": [ord(c) for c in text]}
    >>> chr(result_token(characters, "27 * 30 = 810."))
    '8'
    """
    numbers = re.findall(r"\d+", step)
    if not numbers:
        return None
    return tokenizer(numbers[-1], add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def decode_thoughts(
    model,
    tokenizer,
    settings: LatentSettings,
    prompts: list[str],
    steps: list[list[str]] | None,
    per_step: int,
) -> dict:
    """The figures of the module docstring for ``prompts`` (rendered, ending with <think>); ``steps``: each
    problem's trace split into steps, or None when the test data has no traces."""
    was_training = model.training
    model.eval()
    input_ids, mask, thought_mask, bot = thought_prompts(
        tokenizer, prompts, thought_token_ids(tokenizer), settings.thoughts
    )
    device = model.device
    out = chain_forward(
        model, input_ids.to(device), mask.to(device), thought_mask.to(device), bot,
        feedback=settings.feedback, normalise=settings.normalise,
    )  # fmt: skip
    model.train(was_training)
    thoughts = out.thoughts.float()  # [B, n, D]
    top = (
        model.get_output_embeddings()(thoughts.to(model.get_output_embeddings().weight.dtype))
        .topk(5, dim=-1)
        .indices
    )
    per_thought = []
    for j in range(settings.thoughts):
        firsts = top[:, j, 0].tolist()
        entry = {
            "thought": j + 1,
            "step": j // per_step + 1,
            "norm": thoughts[:, j].norm(dim=-1).mean().item(),
            "top_tokens": [[tokenizer.decode([t]), n] for t, n in Counter(firsts).most_common(5)],
        }
        if steps is not None:
            compared = [(f, s[j // per_step]) for f, s in zip(firsts, steps) if j // per_step < len(s)]
            results = [result_token(tokenizer, step) for _, step in compared]
            # Chance: the same top tokens against the results of the next problem's step.
            shuffled = results[1:] + results[:1]
            counted = len(compared) or None
            entry.update(
                compared=len(compared),
                result_hit=counted and sum(f == r for (f, _), r in zip(compared, results)) / counted,
                result_hit_other_problem=counted
                and sum(f == r for (f, _), r in zip(compared, shuffled)) / counted,
                step_hit=counted
                and sum(f in tokenizer(step, add_special_tokens=False)["input_ids"] for f, step in compared)
                / counted,
            )
        per_thought.append(entry)
    shown = [
        {
            "prompt": prompts[i],
            "steps": steps[i] if steps is not None else None,
            "thoughts": [
                [tokenizer.decode([t]) for t in top[i, j].tolist()] for j in range(settings.thoughts)
            ],
        }
        for i in range(min(SHOWN_PROBLEMS, len(prompts)))
    ]
    return {
        "feedback": settings.feedback,
        "problems": len(prompts),
        "embedding_norm": embedding_scale(model).item(),
        "per_thought": per_thought,
        "examples": shown,
    }


def write_diagnostics(directory: Path, name: str, figures: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2))
    return path


def plot_thoughts(directory: Path) -> Path | None:
    """thoughts.png: per thought, the share decoding to its step's result and its norm, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}
    found = {k: v for k, v in found.items() if v["feedback"] and v["per_thought"]}
    if not found:
        return None
    fig, (hits, norms) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, figures in found.items():
        x = [t["thought"] for t in figures["per_thought"]]
        if all(t.get("result_hit") is not None for t in figures["per_thought"]):
            hits.plot(
                x, [t["result_hit"] for t in figures["per_thought"]], marker="o", label=f"{name}: result"
            )
            hits.plot(
                x,
                [t["step_hit"] for t in figures["per_thought"]],
                marker="x",
                ls="--",
                label=f"{name}: any step token",
            )
        norms.plot(x, [t["norm"] for t in figures["per_thought"]], marker="o", label=name)
    embedding = next(iter(found.values()))["embedding_norm"]
    norms.axhline(embedding, color="grey", ls=":", label="input embeddings")
    hits.set(title="top token of thought j is its step's result", xlabel="thought", ylim=(0, 1))
    norms.set(title="thought norm", xlabel="thought")
    for ax in (hits, norms):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = directory / "thoughts.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
