"""`reasonkit.algorithms` and `rewards` stay free of trainers, vLLM, DeepSpeed and accelerate."""

import json
import subprocess
import sys

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
