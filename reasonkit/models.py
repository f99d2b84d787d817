"""Model and tokenizer loading, and the tiny-model factory used by tests and the demo.

Every model, tiny or not, is loaded with ``from_pretrained`` from a hub id or a local directory: the
tiny factory saves what it builds with ``save_pretrained`` first, so tests exercise the real path.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from reasonkit.format import THINK_CLOSE, THINK_OPEN

EOS, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# The assistant turn ends with EOS, as in ChatML-style templates, so generation stops there.
TINY_CHAT_TEMPLATE = (
    "{%- for message in messages -%}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    pass


def train_tiny_tokenizer(corpus: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` in well under a second.

    Every digit is its own token (so numbers are read digit by digit) and runs of other characters
    merge into whole tokens, which keeps traces short. ``<think>``/``</think>`` are ordinary added
    tokens, not special ones: decoding with ``skip_special_tokens=True`` must keep them.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        chat_template=TINY_CHAT_TEMPLATE,
        padding_side="left",
    )
    wrapped.add_tokens([THINK_OPEN, THINK_CLOSE])
    return wrapped


def build_tiny_model(tokenizer, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, seed=0):
    """A randomly initialised Llama sized for a CPU (about 1M parameters at the defaults).

    Llama, because ``AutoTokenizer`` loads a Llama checkpoint's tokenizer.json as saved; for some model
    types (Qwen2 among them) transformers 5 rebuilds the tokenizer with that family's own pre-tokenizer,
    which would silently change how our tiny tokenizer splits text after a reload (and in vLLM).
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_model(directory: str | Path, corpus: list[str], seed: int = 0, **sizes) -> Path:
    """Build a tiny tokenizer and model and save both to ``directory``; returns it."""
    tokenizer = train_tiny_tokenizer(corpus)
    model = build_tiny_model(tokenizer, seed=seed, **sizes)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def load_tokenizer(path: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise ModelLoadError(_not_found(path, exc)) from None
    if tokenizer.chat_template is None:
        raise ModelLoadError(
            f"the tokenizer of {path!r} has no chat template; reasonkit renders prompts with it. "
            "Use an instruct/chat tokenizer or save one with a `chat_template`."
        )
    tokenizer.padding_side = "left"  # generation appends to the right
    return tokenizer


def load_model(path: str, dtype: str = "float32", attn_implementation: str = "sdpa"):
    """A causal LM from a hub id or directory; a LoRA adapter directory loads merged onto its base."""
    if is_adapter(path):
        from peft import PeftConfig, PeftModel

        base = load_model(
            PeftConfig.from_pretrained(path).base_model_name_or_path, dtype, attn_implementation
        )
        merged = PeftModel.from_pretrained(base, path).merge_and_unload()
        # Adapters trained on top of this model must name it (adapter and all) as their base.
        merged.name_or_path = merged.config._name_or_path = str(path)
        return merged
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[dtype], attn_implementation=attn_implementation
        )
    except OSError as exc:
        raise ModelLoadError(_not_found(path, exc)) from None
    return model


@contextlib.contextmanager
def whole_weights():
    """Load models whole, on this process alone. After a ZeRO-3 stage, transformers shards every model it
    loads (DeepSpeed's config stays registered), and sharding is a step all processes must join."""
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered


def is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def lora_summary(settings) -> str | None:
    """The objective manifest's line for LoRA training (None: every weight is trained)."""
    if settings is None:
        return None
    targets = ", ".join(settings.target_modules)
    return f"LoRA adapters r={settings.r} alpha={settings.alpha} dropout={settings.dropout} on {targets}"


def lora_config(settings):
    """peft's LoraConfig for a recipe's `lora:` section."""
    from peft import LoraConfig

    targets = settings.target_modules
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


def ensure_distinct_pad(tokenizer, model) -> None:
    """Give the tokenizer a pad token that is not EOS.

    With pad == EOS, masking padding out of the loss would mask the EOS the model must learn to emit,
    and a model that never learns to stop fills ``max_new_tokens`` with junk.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    tokenizer.add_special_tokens({"pad_token": PAD})
    match_vocabulary(tokenizer, model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def match_vocabulary(tokenizer, model) -> None:
    """Grow ``model``'s embeddings to the tokenizer's size. The new rows are drawn with a fixed seed, so
    two loads of one model agree (the KL reference is loaded apart from the policy)."""
    if len(tokenizer) <= model.config.vocab_size:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tokenizer))


def _not_found(path: str, exc: Exception) -> str:
    where = "a local directory" if Path(path).exists() else "a hub id or local directory"
    return f"could not load model/tokenizer from {path!r} ({where}): {exc}"
