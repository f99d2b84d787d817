import pytest


@pytest.fixture(scope="session")
def tool_model_dir(tmp_path_factory):
    """A tiny model that calls the calculator as ``tests/helpers/tool_model.py`` taught it."""
    from tests.helpers.tool_model import save_tool_model

    directory = tmp_path_factory.mktemp("tool_model") / "model"
    save_tool_model(directory)
    return directory
