#!/usr/bin/env bash
# The GPU check in one run of at most 8 minutes on a bare GPU machine (no registry; torch, transformers,
# accelerate and peft installed): installs the wheels `make gpu-check-wheels` put in benchmarks/wheels/
# (TRL, datasets, math-verify and what they need that such a machine lacks), then runs
# benchmarks/gpu_check.py (a GRPO step at Qwen2.5-0.5B's shape with all 24 layers against TRL's, the
# log-prob memory at 16k tokens x 151,936, the tests with a CUDA path), which writes one results file.
#
#   make gpu-check-wheels                    # here, with a registry: ~2 MB of wheels for Python 3.12
#   benchmarks/gpu_check.sh [RESULTS.md]     # there, from the repository's root (default $OUT/gpu_check.md,
#                                            # else runs/gpu_check/gpu_check.md)
#   benchmarks/gpu_check.sh --cpu [...]      # toy sizes on a CPU: checks the script before a GPU is lent
#
# With the device tool: carry benchmarks/wheels, timeout_s 540.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=()
if [[ ${1:-} == --cpu ]]; then mode=(--cpu); shift; fi
results=${1:-${OUT:-runs/gpu_check}/gpu_check.md}
python=${PYTHON:-python3}
started=$(date +%s)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # reasonkit and rewards from this checkout

# The wheels, into a folder of their own, without their dependencies (those the machine has are kept; one
# it lacks shows up in the import check below). A package already importable is not installed again.
site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
wheels=${GPU_CHECK_WHEELS:-benchmarks/wheels}
if compgen -G "$wheels/*.whl" >/dev/null; then
    wanted=()
    for wheel in "$wheels"/*.whl; do
        name=$(basename "$wheel" | cut -d- -f1)
        module=$(case $name in
            antlr4_python3_runtime) echo antlr4 ;; *) echo "$name" ;; esac)
        "$python" -c "import $module" 2>/dev/null || wanted+=("$wheel")
    done
    if ((${#wanted[@]})); then
        echo "installing: ${wanted[*]##*/}"
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
            "${wanted[@]}" || { echo "gpu_check: installing the wheels failed"; exit 1; }
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    echo "gpu_check: no wheels in $wheels/ (make gpu-check-wheels); using what is installed"
fi
"$python" - <<'EOF' || { echo "gpu_check: a package the check needs does not import (above)"; exit 1; }
import importlib, importlib.metadata as md
for module in ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "pyarrow", "math_verify", "yaml"]:
    importlib.import_module(module)
    dist = {"yaml": "pyyaml", "math_verify": "math-verify"}.get(module, module)
    print(f"{dist} {md.version(dist)}", end="; ")
print()
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 8 minutes in all: what the install took comes off the sections' budget.
budget=$((480 - 20 - ($(date +%s) - started)))
timeout $((budget + 15)) "$python" benchmarks/gpu_check.py "${mode[@]}" --out "$results" --budget "$budget"
status=$?
echo "gpu_check: exit $status in $(($(date +%s) - started)) s; results in $results"
exit $status
