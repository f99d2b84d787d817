import json
import shutil

import pytest
import torch

from reasonkit.models import load_model

PROMPTS = ["<|user|>What is 12 * 34?<|end|><|assistant|>", "<|user|>What is 5 * 6?<|end|><|assistant|>"]


def plain_greedy(model, tokenizer, prompt: str, steps: int) -> list[int]:
    """Greedy continuation by argmax, one forward per token: no generate(), no generation config."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-steps:]


@pytest.fixture(scope="session")
def opinionated_model_dir(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    """The tiny model whose generation_config.json adds settings of its own, as chat checkpoints' often do:
    sampling settings an engine must ignore, and a second EOS id it must stop at (the token plain greedy
    decoding of ``PROMPTS[0]`` emits third, so greedy completions of it end there or earlier)."""
    directory = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(tiny_model_dir, directory)
    extra_eos = plain_greedy(load_model(str(tiny_model_dir)), tiny_tokenizer, PROMPTS[0], steps=3)[-1]
    assert extra_eos != tiny_tokenizer.eos_token_id
    config_path = directory / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(
        repetition_penalty=1.3,
        no_repeat_ngram_size=2,
        min_new_tokens=4,
        eos_token_id=[tiny_tokenizer.eos_token_id, extra_eos],
    )
    config_path.write_text(json.dumps(config, indent=2))
    return directory
