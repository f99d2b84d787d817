"""`reasonkit.algorithms` and `rewards` stay free of trainers, vLLM, DeepSpeed and accelerate; the command
line's help and `validate` free of torch."""

import json
import subprocess
import sys

import pytest

FORBIDDEN = [
    "accelerate",
    "deepspeed",
    "vllm",
    "trl",
    "reasonkit.sft",
    "reasonkit.grpo",
    "reasonkit.pipeline",
]


def test_pure_layers_import_no_trainer_stack():
    code = (
        "import json, sys\n"
        "import reasonkit.algorithms, rewards\n"
        "rewards.known()  # loads the built-in reward modules too\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    leaked = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not leaked, f"pure layers pulled in: {leaked}"


def modules_loaded_by(code: str) -> list[str]:
    wrapped = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


HELP = (
    "from reasonkit.cli import main\n"
    "for words in [[], ['run'], ['validate'], ['eval'], ['generate'], ['rewards', 'check']]:\n"
    "    try:\n"
    "        main([*words, '--help'])\n"
    "    except SystemExit:\n"
    "        pass\n"
)


def test_command_help_and_validate_import_no_torch():
    """The command line answers quickly: heavy imports stay inside the commands that need them."""
    loaded = modules_loaded_by(HELP + "main(['validate', 'recipes/demo/sudoku_trm.yaml'])")
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "transformers", "vllm", "accelerate")]


@pytest.mark.xfail(
    strict=True,
    reason="checking a GRPO or eval stage reads the names of registries kept in modules that import torch "
    "(reasonkit.algorithms, reasonkit.rollout's ENGINES)",
)
def test_validate_of_a_language_model_recipe_imports_no_torch():
    loaded = modules_loaded_by(
        "from reasonkit.cli import main\nmain(['validate', 'recipes/demo/arithmetic.yaml'])"
    )
    assert "torch" not in loaded
