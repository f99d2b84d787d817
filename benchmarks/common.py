"""What the side-by-side benchmarks share: model shapes built on the spot (and their variant that stops at
varied lengths), the prompts, the reward, and how a process reports its time and memory.

Every benchmark runs each side in a process of its own (so peak memory is that side's alone) and the
orchestrator (bench.py) alternates them A/B/A/B.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # reasonkit from this checkout, wherever the script is started

# Random-init models, built on the spot. `qwen0.5b` has Qwen2.5-0.5B's width and vocabulary (its 24
# layers on a GPU; a few on a CPU), so the LM head and the log-prob pass weigh as they do on the real
# model. Llama modules with Qwen's biased attention projections: a Qwen2 checkpoint would make
# transformers rebuild our local tokenizer with Qwen's pre-tokenizer.
SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=None),  # the demo's
    "25m": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8,
                num_key_value_heads=8, vocab_size=None),
    "qwen0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2, vocab_size=151_936, attention_bias=True),
}  # fmt: skip
ARITHMETIC = dict(digits=2, test_size=100, rl_size=1000)


def build_model(
    shape: str, directory: Path, layers: int | None = None, stop_rate: float | None = None
) -> Path:
    """Save a random-init model of ``shape`` (``layers`` overriding its depth) with a tiny tokenizer; with
    ``stop_rate``, one that ends completions at that rate per token (``stop_at_a_constant_rate``)."""
    from reasonkit.models import train_tiny_tokenizer
    from reasonkit.tasks import arithmetic_splits

    if (directory / "config.json").exists():
        return directory
    corpus = [p.prompt + " " + p.trace + " " + p.answer for p in arithmetic_splits(digits=2)["train"][:2000]]
    tokenizer = train_tiny_tokenizer(corpus)
    model = random_model(shape, tokenizer, layers)
    if stop_rate:
        stop_at_a_constant_rate(model, tokenizer.eos_token_id, stop_rate)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def random_model(shape: str, tokenizer, layers: int | None = None):
    """A random-init Llama of ``shape`` (``layers`` overriding its depth) for ``tokenizer``, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sizes = dict(SHAPES[shape])
    sizes["vocab_size"] = sizes["vocab_size"] or len(tokenizer)
    if layers:
        sizes["num_hidden_layers"] = layers
    config = LlamaConfig(
        **sizes,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# How TRL (and reasonkit's tool loop, where a tokenizer has one) reads the tool calls of the tiny models' chat
# template (reasonkit/models.py: Qwen-style `<tool_call>{json}</tool_call>` in the assistant's turn, ended
# by <|end|>): transformers' response template (>= 5.13), saved with the tokenizer. TRL sets one only for
# the chat templates it knows (`trl.chat_template_utils.add_response_schema` raises "Unrecognized chat
# template" for any other) and keeps one the tokenizer already has. Modelled on TRL's `qwen3_template`.
TOOL_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>",
    "fields": {
        "tool_calls": {
            "open": "<tool_call>",
            "close_pattern": r"</tool_call>\s*",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"<\|end\|>\s*", "content": "text"},
    },
}


def tool_conversation(problem) -> list[dict]:
    """An arithmetic problem answered through the calculator: one call, then the result as the answer."""
    expression = problem.prompt.removeprefix("What is ").removesuffix("?")
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}
    return [
        {"role": "user", "content": problem.prompt},
        {"role": "assistant", "content": "<think>", "tool_calls": [call]},
        {"role": "tool", "name": "calculator", "content": problem.answer},
        {"role": "assistant", "content": f"</think>{problem.answer}"},
    ]


def build_tool_model(shape: str, directory: Path, steps: int = 300) -> Path:
    """The ``shape`` model fine-tuned (``steps`` of 32 conversations) to answer an arithmetic prompt by calling
    the calculator on its expression, then writing the result (``tool_conversation``), so that the GRPO
    prompts (the `rl` split, not trained on) call a tool in most sampled completions, whichever trainer
    samples them. Its tokenizer carries ``TOOL_RESPONSE_TEMPLATE``."""
    import torch

    from reasonkit.models import train_tiny_tokenizer
    from reasonkit.tasks import arithmetic_splits
    from reasonkit.tools.builtin import calculator
    from reasonkit.tools.template import conversation_ids

    if (directory / "config.json").exists():
        return directory
    conversations = [tool_conversation(p) for p in arithmetic_splits(**ARITHMETIC)["train"]]
    corpus = [m["content"] for c in conversations[:2000] for m in c]
    calls = '<tool_call>{"name": "calculator", "arguments": {"expression": "12 * 34"}}</tool_call>'
    tokenizer = train_tiny_tokenizer(
        [*corpus, calls, "<tool_response>408</tool_response>", "tools: calculator(expression)"]
    )
    tokenizer.response_template = TOOL_RESPONSE_TEMPLATE
    model = random_model(shape, tokenizer)
    examples = [conversation_ids(tokenizer, c, [calculator]) for c in conversations]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = [examples[i] for i in torch.randint(len(examples), (32,), generator=generator).tolist()]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in batch])
        # the loss on the model's turns only: not on the prompt, the tool's result or the padding
        labels = torch.tensor(
            [
                [t if m else -100 for t, m in zip(ids, mask)] + [-100] * (width - len(ids))
                for ids, mask in batch
            ]
        )
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def parameter_count(directory: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def prompt_rows(model_dir: Path, messages: bool = False) -> list[dict]:
    """The GRPO prompts both sides train on: the arithmetic task's `rl` split, rendered by the tokenizer's
    chat template exactly as reasonkit renders them (TRL gets the rendered text); with ``messages``, as one
    user message each, which TRL renders itself (its tool calling needs conversational prompts: it renders
    them with the tools' schemas and parses the completions as messages)."""
    from reasonkit.data import prompt_format
    from reasonkit.models import load_tokenizer
    from reasonkit.tasks import arithmetic_splits

    problems = arithmetic_splits(**ARITHMETIC)["rl"]
    if messages:
        return [{"prompt": [{"role": "user", "content": p.prompt}], "answer": p.answer} for p in problems]
    tokenizer = load_tokenizer(str(model_dir))
    fmt = prompt_format(tokenizer, None)
    return [{"prompt": fmt.render(tokenizer, p.prompt), "answer": p.answer} for p in problems]


def run_reasonkit_stage(
    model: str, out_dir: Path, name: str, stage: dict, arithmetic: dict, dtype: str = "float32"
) -> None:
    """One reasonkit stage on ``model`` over the arithmetic task, as a recipe, metrics to JSONL only;
    ``dtype`` the recipe's training precision (bfloat16: float32 weights, bf16 autocast)."""
    from reasonkit.pipeline import run_recipe
    from reasonkit.recipe import build_recipe

    recipe = build_recipe(
        {
            "output_dir": str(out_dir),
            "model": {"path": model, "dtype": dtype},
            "data": {"task": "arithmetic", "arithmetic": arithmetic},
            "stages": {name: stage},
            "report_to": ["jsonl"],
        }
    )
    run_recipe(recipe, overwrite=True)


def digit_share(prompts, completions, **kwargs) -> list[float]:
    """The share of a completion's characters that are digits: a cheap reward that varies within every
    group, even for a random model, so advantages are never all zero (TRL's calling convention)."""
    return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]


def tool_answer(prompts, completions, answer, **kwargs) -> list[float]:
    """1 where the text after the completion's last ``</think>`` is the answer, else 0: with tools, whether
    the calculator's result reached the answer. Reads both trainers' shapes: reasonkit's text (tool results
    included), TRL's messages (their contents joined).

    >>> tool_answer(None, ["<think><tool_call>...</tool_call>1958</think>1958", "</think>19"], ["1958", "1958"])
    [1.0, 0.0]
    >>> tool_answer(None, [[{"role": "assistant", "content": "<think>"}, {"role": "tool", "content": "1958"},
    ...                     {"role": "assistant", "content": "</think>1958"}]], ["1958"])
    [1.0]
    """
    from rewards.convention import completion_text

    return [
        float(completion_text(c).rpartition("</think>")[2].strip() == a) for c, a in zip(completions, answer)
    ]


def stop_at_a_constant_rate(model, eos: int, rate: float, anchor: float = 1000.0) -> None:
    """Make a random-init Llama end each completion with probability ``rate`` at every token (lengths
    geometric: with ``rate = 3 / cap``, a fifth end within a twelfth of the cap and one in twenty runs to
    it), whatever engine samples it. This is the *varied* regime, a property of the model, so TRL's
    ``generate``, our engine and vLLM all see the same lengths.

    How: one residual dimension is held at ``anchor`` for every token (its embedding column, and no
    layer writes to it), so after the final RMSNorm it dominates and is about sqrt(hidden). With tied
    embeddings that dimension adds the same to every token's logit, except EOS, whose entry is raised so
    its logit leads every other (which the normalisation leaves near 0) by log(rate (V - 1) / (1 - rate))."""
    import torch

    dim, hidden = 0, model.config.hidden_size
    embedding = model.get_input_embeddings().weight  # the LM head too (tied)
    margin = math.log(rate * (embedding.shape[0] - 1) / (1 - rate))
    with torch.no_grad():
        embedding[:, dim] = anchor
        embedding[eos, dim] = anchor + margin / math.sqrt(hidden)
        for layer in model.model.layers:
            for writer in (layer.self_attn.o_proj, layer.mlp.down_proj):
                writer.weight[dim] = 0
                if writer.bias is not None:
                    writer.bias[dim] = 0


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(path: str | None, result: dict) -> None:
    text = json.dumps(result, indent=1)
    if path:
        Path(path).write_text(text)
    else:
        print(text)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
