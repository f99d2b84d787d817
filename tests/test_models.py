import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonkit.models import (
    PAD,
    ModelLoadError,
    build_tiny_model,
    ensure_distinct_pad,
    load_model,
    load_tokenizer,
    train_tiny_tokenizer,
)
from rewards.contract import THINK_CLOSE, THINK_OPEN
from tests.conftest import TINY_SIZES, arithmetic_corpus


def test_tokenizer_reloads_exactly_through_autotokenizer(tiny_model_dir):
    from reasonkit.models import train_tiny_tokenizer

    fresh = train_tiny_tokenizer(arithmetic_corpus())
    reloaded = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "<|user|>What is 27 * 34?<|end|><|assistant|><think>27 * 30 = 810. 27 * 4 = 108.</think>918<|end|>"
    assert reloaded(text)["input_ids"] == fresh(text)["input_ids"]
    tokens = reloaded.convert_ids_to_tokens(reloaded("27 * 34")["input_ids"])
    assert tokens == ["2", "7", "Ġ*Ġ", "3", "4"]  # one token per digit, one per run of other characters


def test_think_tags_are_single_tokens_that_survive_skip_special(tiny_tokenizer):
    for tag in (THINK_OPEN, THINK_CLOSE):
        assert len(tiny_tokenizer(tag)["input_ids"]) == 1
    ids = tiny_tokenizer("<think>1 + 1 = 2.</think>2<|end|>")["input_ids"]
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == "<think>1 + 1 = 2.</think>2"


def test_model_reloads_through_the_hub_path(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    again = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids).logits, again(ids).logits)
    assert model.config.eos_token_id != model.config.pad_token_id


def test_pad_token_made_distinct_from_eos(tiny_model_dir):
    tokenizer, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    tokenizer.pad_token = tokenizer.eos_token
    ensure_distinct_pad(tokenizer, model)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_a_tokenizer_without_a_pad_gets_a_reserved_token_and_the_model_keeps_its_size(llama3_style_model_dir):
    tokenizer, model = load_tokenizer(str(llama3_style_model_dir)), load_model(str(llama3_style_model_dir))
    assert tokenizer.pad_token is None and model.config.vocab_size == len(tokenizer)
    ensure_distinct_pad(tokenizer, model)
    assert tokenizer.pad_token == "<|reserved_special_token_0|>"
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == model.config.vocab_size


def test_a_new_pad_token_takes_a_spare_embedding_row():
    tokenizer = train_tiny_tokenizer(arithmetic_corpus(), pad_token=None)
    model = build_tiny_model(tokenizer, **TINY_SIZES)
    model.resize_token_embeddings(len(tokenizer) + 8)  # as checkpoints padded to a multiple of 64 have
    ensure_distinct_pad(tokenizer, model)
    assert (
        tokenizer.pad_token == PAD and tokenizer.pad_token_id < model.config.vocab_size == len(tokenizer) + 7
    )
    assert model.get_input_embeddings().num_embeddings == model.config.vocab_size


def test_resizing_for_a_pad_is_the_last_resort_and_says_so(caplog):
    tokenizer = train_tiny_tokenizer(arithmetic_corpus(), pad_token=None)
    model = build_tiny_model(tokenizer, **TINY_SIZES)
    with caplog.at_level(logging.WARNING, logger="reasonkit.models"):
        ensure_distinct_pad(tokenizer, model)
    assert tokenizer.pad_token == PAD and model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert "vLLM" in caplog.text


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="could not load"):
        load_tokenizer(str(tmp_path / "nope"))
