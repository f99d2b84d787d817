"""Model and tokenizer loading, and the tiny-model factory used by tests and the demo.

Every model, tiny or not, is loaded with ``from_pretrained`` from a hub id or a local directory: the
tiny factory saves what it builds with ``save_pretrained`` first, so tests exercise the real path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
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

from reasonkit import hub
from reasonkit.errors import ReasonkitError
from reasonkit.recurrent.model import RecurrentConfig, RecurrentForCausalLM  # registers the model type
from reasonkit.rollout.base import stop_token_ids
from rewards.contract import THINK_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)

EOS, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# The assistant turn ends with EOS, as in ChatML-style templates, so generation stops there. With tools,
# as Qwen's and Hermes' templates write them: a system turn lists them (compactly: name and arguments),
# a call is <tool_call>{"name": ..., "arguments": {...}}</tool_call> in the assistant's turn, a result a
# user turn <tool_response>...</tool_response>.
TINY_CHAT_TEMPLATE = (
    "{%- if tools -%}<|system|>tools:{%- for tool in tools %} {{ tool.function.name }}"
    "({{ tool.function.parameters.properties | join(', ') }}){%- endfor -%}<|end|>{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'tool' -%}<|user|><tool_response>{{ message['content'] }}</tool_response><|end|>"
    "{%- elif message['role'] == 'assistant' and message.get('tool_calls') -%}<|assistant|>{{ message['content'] or '' }}"
    "{%- for call in message['tool_calls'] -%}<tool_call>{{ {'name': call['function']['name'], "
    "'arguments': call['function']['arguments']} | tojson }}</tool_call>{%- endfor -%}<|end|>"
    "{%- else -%}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
# Special tokens that text never contains, in the order they are preferred as a pad: Llama 3.1's
# <|finetune_right_pad_id|> or a <pad>, Llama 3's <|reserved_special_token_N|>, an <|endoftext|> or
# <|end_of_text|> that is no stop token, unk.
PAD_LIKE = [r"pad", r"reserved", r"end_?of_?text", r"unk"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(ReasonkitError, RuntimeError):
    pass


def train_tiny_tokenizer(
    corpus: list[str], vocab_size: int = 400, pad_token: str | None = PAD, reserved_tokens: int = 0
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` in well under a second.

    Every digit is its own token (so numbers are read digit by digit) and runs of other characters
    merge into whole tokens, which keeps traces short. ``<think>``/``</think>`` are ordinary added
    tokens, not special ones: decoding with ``skip_special_tokens=True`` must keep them.
    ``pad_token=None, reserved_tokens=2`` builds one like Llama 3's: no pad token, but special tokens
    ``<|reserved_special_token_N|>`` that text never contains.
    """
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(reserved_tokens)]
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
        special_tokens=[EOS, *([pad_token] if pad_token else []), *ROLE_TOKENS, *reserved],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=pad_token,
        additional_special_tokens=ROLE_TOKENS,
        chat_template=TINY_CHAT_TEMPLATE,
        padding_side="left",
    )
    wrapped.add_tokens([THINK_OPEN, THINK_CLOSE])
    return wrapped


def build_tiny_model(
    tokenizer, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, seed=0, recurrent=None
):
    """A randomly initialised Llama sized for a CPU (about 1M parameters at the defaults); with ``recurrent``
    (a ``RecurrentLayout``), a recurrent-depth model of Llama layers instead (reasonkit.recurrent.model).

    Llama, because ``AutoTokenizer`` loads a Llama checkpoint's tokenizer.json as saved; for some model
    types (Qwen2 among them) transformers 5 rebuilds the tokenizer with that family's own pre-tokenizer,
    which would silently change how our tiny tokenizer splits text after a reload (and in vLLM).
    """
    config_class, model_class, layout = LlamaConfig, LlamaForCausalLM, {}
    if recurrent is not None:
        config_class, model_class = RecurrentConfig, RecurrentForCausalLM
        layout = {**dataclasses.asdict(recurrent), "recurrence_seed": seed}
    config = config_class(
        **layout,
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
    model = model_class(config)
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
        with hub.reading(path, "tokenizer"):
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
        with hub.reading(path, "model"):
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


def merged_dir_of(model_dir: str | Path) -> Path:
    """Where a LoRA stage whose adapter is in ``model_dir`` writes its merged full weights (`lora.save_merged`)."""
    return Path(model_dir).parent / "merged"


def is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


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
    """Give the tokenizer a pad token distinct from its EOS, without growing the model.

    With pad == EOS, masking padding out of the loss would mask the EOS the model must learn to emit,
    and a model that never learns to stop fills ``max_new_tokens`` with junk. Growing the embeddings
    for a new pad token would make the policy's weights a different shape from the checkpoint's, and
    vLLM could no longer take them. So, in order: the tokenizer's own distinct pad; a special token it
    already has that text never contains (see ``PAD_LIKE``); a new pad token in a spare embedding row;
    and only as a last resort a new row.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    rows = model.get_input_embeddings().num_embeddings
    pad = _unused_special_token(
        tokenizer, rows, stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    )
    if pad is not None:
        tokenizer.pad_token = pad
    else:
        tokenizer.add_special_tokens({"pad_token": PAD})
        if len(tokenizer) > rows:
            log.warning(
                "the tokenizer has no pad token and the model no spare embedding row: a new pad token grows "
                "the embeddings to %d rows, and weight sync into a vLLM engine started from the checkpoint "
                "will fail",
                len(tokenizer),
            )
            match_vocabulary(tokenizer, model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def _unused_special_token(tokenizer, rows: int, stop_ids: list[int]) -> str | None:
    """The first special token matching ``PAD_LIKE`` (patterns in order, then by id) that is no stop token
    and has an embedding row. Llama 3's reserved tokens are special added tokens, which
    ``all_special_tokens`` leaves out."""
    added = [token.content for token in tokenizer.added_tokens_decoder.values() if token.special]
    by_id = {
        tokenizer.convert_tokens_to_ids(token): token for token in [*added, *tokenizer.all_special_tokens]
    }
    for pattern in PAD_LIKE:
        for token_id, token in sorted(by_id.items()):
            if re.search(pattern, token, re.IGNORECASE) and token_id not in stop_ids and token_id < rows:
                return token
    return None


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
