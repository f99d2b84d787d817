import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonkit.format import THINK_CLOSE, THINK_OPEN
from reasonkit.models import ModelLoadError, ensure_distinct_pad, load_model, load_tokenizer
from tests.conftest import arithmetic_corpus


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


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="could not load"):
        load_tokenizer(str(tmp_path / "nope"))
