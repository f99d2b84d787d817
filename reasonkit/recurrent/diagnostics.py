"""What the recurrent core does with its state, iteration by iteration, and where the adaptive exit stops.

For the first test prompts, at their last position (where the answer's first token is predicted), from
s_0 = 0 through the deepest evaluated r:

- ``successive_distance[i]``: mean ‖s_i − s_{i−1}‖ / ‖s_i‖ (i = 1..r): falling towards 0, the state
  converges to a fixed point; staying up, it keeps moving;
- ``two_back_distance[i]``: mean ‖s_i − s_{i−2}‖ / ‖s_i‖ (i = 2..r): small while the successive distance
  stays large is a 2-cycle;
- ``accuracy``: pass@1 and generated tokens at each evaluated depth, and for the adaptive exit the mean
  iterations per token and their histogram.

Written to ``diagnostics/<model>.json``; ``plot_recurrence`` draws every such file of the folder into
``diagnostics/recurrence.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

KIND = "recurrence"  # the diagnostics files of this module, among others in the folder


@torch.no_grad()
def state_dynamics(model, tokenizer, prompts: list[str], recurrences: int) -> dict:
    """The distances of the module docstring for ``prompts`` (rendered), at fixed depth ``recurrences``."""
    was_training = model.training
    model.eval()
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    mask = encoded["attention_mask"]
    states = model.model.states(
        encoded["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0), recurrences=recurrences
    )[:, :, -1].float()  # [r + 1, B, hidden]: left padding puts every prompt's last token in the last column
    model.train(was_training)
    norms = states.norm(dim=-1).clamp(min=1e-12)
    successive = ((states[1:] - states[:-1]).norm(dim=-1) / norms[1:]).mean(-1)
    two_back = ((states[2:] - states[:-2]).norm(dim=-1) / norms[2:]).mean(-1)
    return {
        "recurrences": recurrences,
        "problems": len(prompts),
        "successive_distance": [round(v, 6) for v in successive.tolist()],
        "two_back_distance": [round(v, 6) for v in two_back.tolist()],
        "state_norm": [round(v, 4) for v in norms.mean(-1).tolist()],
    }


def write_diagnostics(path: Path, dynamics: dict, by_recurrence: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": KIND, **dynamics, "accuracy": by_recurrence}, indent=2))


def plot_recurrence(directory: Path) -> None:
    """Per model: state distances per iteration, accuracy against r, the adaptive exit's histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = {}
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("kind") == KIND:
            found[path.stem] = record
    if not found:
        return
    fig, (dist, acc, hist) = plt.subplots(1, 3, figsize=(14, 4))
    for index, (name, record) in enumerate(found.items()):
        color = f"C{index}"
        steps = range(1, record["recurrences"] + 1)
        dist.plot(steps, record["successive_distance"], color=color, label=f"{name}: s_i vs s_(i-1)")
        dist.plot(
            steps[1:], record["two_back_distance"], color=color, linestyle=":", label=f"{name}: vs s_(i-2)"
        )
        fixed = sorted(
            (int(label[2:]), result["pass@1"]["value"])
            for label, result in record["accuracy"].items()
            if label.startswith("r=")
        )
        acc.plot(*zip(*fixed), marker="o", color=color, label=name)
        for label, result in record["accuracy"].items():
            if label == "exit":
                acc.axhline(
                    result["pass@1"]["value"],
                    color=color,
                    linestyle="--",
                    label=f"{name}: exit, {result['recurrence_steps']:.1f} iterations",
                )
                histogram = {int(k): v for k, v in result["recurrence_histogram"].items()}
                hist.bar(list(histogram), list(histogram.values()), color=color, alpha=0.6, label=name)
    dist.set(xlabel="iteration i", ylabel="relative distance", yscale="log", title="state dynamics")
    acc.set(xlabel="test-time r", ylabel="pass@1", xscale="log", title="accuracy against depth")
    acc.set_ylim(bottom=0)
    hist.set(xlabel="iterations used", ylabel="tokens", title="adaptive exit")
    for ax in (dist, acc, hist):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / "recurrence.png", dpi=90)
    plt.close(fig)
