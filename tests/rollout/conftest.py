import json
import shutil

import pytest


@pytest.fixture(scope="session")
def opinionated_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model whose generation_config.json adds settings of its own, as chat checkpoints' often do.
    An engine must sample with none of them."""
    directory = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(tiny_model_dir, directory)
    config_path = directory / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4)
    config_path.write_text(json.dumps(config, indent=2))
    return directory
