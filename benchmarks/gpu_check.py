"""The GPU check, sized for one short run on a bare GPU machine (benchmarks/gpu_check.sh installs the carried
wheels, then runs this): one results file, in Markdown, with

- grpo: a GRPO step at Qwen2.5-0.5B's shape with all 24 layers, bf16 (float32 weights, bf16 autocast),
  transformers generation, side by side with TRL's GRPOTrainer, uniform and varied lengths (the settings of
  `make bench`'s GRPO section, `grpo_step.py`), wall seconds per phase, the GPU synchronised at each
  phase's end, and each process's peak GPU memory;
- memory: one micro-batch's log-prob pass at 16,384 tokens x 151,936, the LM head in chunks against whole
  logits, float32 and bf16 autocast, peak GPU memory above the model (`logprob_memory.py`);
- tests: the tests with a CUDA path (chunked log-probs and bf16 autocast on CUDA, the trainer's update
  through sdpa's GPU kernels in both micro-batch layouts, bf16 against float32), their pytest summary.

    python benchmarks/gpu_check.py --out runs/gpu_check/gpu_check.md [--budget 450]
    python benchmarks/gpu_check.py --cpu ...   # the same steps at toy sizes, on a CPU: checks the script

Each section is skipped, and says so, when less time is left than it needs; a side that fails is reported
with the end of its log. Timings compare sides within this run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import Bench, grpo_row, version  # noqa: E402
from common import ROOT  # noqa: E402

# (shape, layers, B, G, max new tokens, steps, steps left out of the median, A/B repeats)
GPU_GRPO = ("qwen0.5b", None, 8, 8, 128, 4, 1, 1)  # None: all 24 layers
CPU_GRPO = ("tiny", None, 4, 4, 16, 2, 1, 1)
GPU_MEMORY_TOKENS, CPU_MEMORY_TOKENS = 16384, 512
# What each section needs at least, in seconds, measured or estimated for an H100/H200 run.
NEEDS = {"grpo": 200, "memory": 60, "tests": 60}
TESTS = [
    "tests/grpo/test_logprobs.py::test_chunked_head_equals_the_whole_vocabulary_computation",
    "tests/grpo/test_logprobs.py::test_chunking_changes_nothing_in_bf16_autocast",
    "tests/grpo/test_update.py::test_padded_and_packed_micro_batches_make_the_same_update",
    "tests/grpo/test_update.py::test_bfloat16_training_moves_weights_as_float32_does",
]


class GPUCheck:
    def __init__(self, args):
        self.args, self.deadline = args, time.time() + args.budget
        self.work = Path(args.work).resolve()
        self.bench = Bench(SimpleNamespace(output=str(self.work), quick=False, shapes=None, repeats=None))
        self.lines: list[str] = []

    def left(self) -> float:
        return self.deadline - time.time()

    def grpo(self) -> None:
        shape, layers, B, G, T, steps, warmup, _ = CPU_GRPO if self.args.cpu else GPU_GRPO
        rows = []
        for regime in ["uniform", "varied"]:
            model = self.bench.model(shape, layers, stop_rate=3 / T if regime == "varied" else None)
            common = ["--model", model, "--prompts", B, "--generations", G, "--max-new-tokens", T,
                      "--steps", steps, "--warmup", warmup, "--trl-micro-batch", min(16, B * G),
                      "--dtype", "float32" if self.args.cpu else "bfloat16"]  # fmt: skip
            # (TRL refuses bf16 without a GPU: the CPU run checks the plumbing in float32)
            runs = {side: [self.child("grpo_step.py", f"gpu-grpo-{regime}-{side}", "--side", side, *common,
                                      cap=150)] for side in ["reasonkit", "trl"]}  # fmt: skip
            rows.append((shape, layers, model, regime, B, G, T, runs))
        self.lines += [
            f"## GRPO step at {shape}'s shape, all layers, {'float32' if self.args.cpu else 'bf16'},"
            " transformers generation: reasonkit vs TRL",
            "",
            "Median step after warm-up in wall seconds (the GPU synchronised at each phase's end), split into"
            " generation / scoring / log-probs (reference, old) / optimisation (the rest); peak memory of each"
            " process's host RAM (the GPU's is in each side's JSON, `gpu_peak_mib`). Ratio: reasonkit / TRL.",
            "",
            "| shape | params | regime | B x G, tokens | mean length (rk / TRL) | reasonkit step (gen / score / logp / opt) | TRL step (gen / score / logp / opt) | ratio | peak MiB (rk / TRL) |",
            "|---|---|---|---|---|---|---|---|---|",
            *(grpo_row(r, ["generation", "scoring", "logprobs", "optimisation"], clock="wall") for r in rows),
            "",
            "GPU peak MiB (rk / TRL): "
            + "; ".join(f"{r[3]}: {gpu_peak(r[7]['reasonkit'])} / {gpu_peak(r[7]['trl'])}" for r in rows),
            "",
        ]

    def memory(self) -> None:
        tokens = CPU_MEMORY_TOKENS if self.args.cpu else GPU_MEMORY_TOKENS
        device = "cpu" if self.args.cpu else "cuda"
        self.bench.model("qwen0.5b", 2)
        results = []
        for bf16 in [False, True]:
            for head in ["chunked", "whole"]:
                extra = (["--whole"] if head == "whole" else []) + (["--bf16"] if bf16 else [])
                name = f"gpu-memory-{tokens}-{head}{'-bf16' if bf16 else ''}"
                results.append(self.child("logprob_memory.py", name, "--tokens", tokens, "--device", device,
                                          "--model-dir", self.bench.models, *extra, cap=90))  # fmt: skip
        self.lines += [
            "## Log-prob pass memory at Qwen2.5's vocabulary (151,936)",
            "",
            f"One micro-batch's forward + backward (log-probs and entropy), Qwen2.5-0.5B width with 2 layers, rows"
            f" of 512 tokens, on {device}; peak memory above the loaded model (torch's allocations on a GPU).",
            "",
            "| tokens | precision | LM head | peak above the model | seconds |",
            "|---|---|---|---|---|",
        ]
        for r in results:
            if "error" in r:
                self.lines.append(f"| | | | failed: {r['error']} | |")
            elif "failed" in r:
                self.lines.append(f"| {r['tokens']:,} | {r['precision']} | {r['head']} | {r['failed']} | |")
            else:
                self.lines.append(
                    f"| {r['tokens']:,} | {r['precision']} | {r['head']} | {r['pass_mib'] / 1024:.2f} GiB"
                    f" | {r['seconds']:.1f} |"
                )
        self.lines.append("")

    def tests(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *TESTS],
            capture_output=True, text=True, cwd=ROOT, timeout=max(30, self.left() - 10),
        )  # fmt: skip
        summary = [line for line in done.stdout.splitlines() if line.strip()][-12:]
        self.lines += [
            "## Tests with a CUDA path",
            "",
            f"`python -m pytest {' '.join(TESTS)}`: exit {done.returncode}",
            "",
            "```",
            *summary,
            "```",
            "",
        ]

    def child(self, script: str, name: str, *arguments, cap: float) -> dict:
        """One process of a section, stopped after ``cap`` seconds or at the budget's end."""
        result = self.bench.child(script, name, *arguments, timeout=max(10, min(cap, self.left() - 5)))
        if "error" in result:
            log = (self.work / f"{name}.log").read_text() if (self.work / f"{name}.log").exists() else ""
            self.lines += [
                f"{name} failed; the end of its log:",
                "",
                "```",
                *log.splitlines()[-25:],
                "```",
                "",
            ]
        return result


def gpu_peak(results: list[dict]) -> str:
    peaks = [r["gpu_peak_mib"] for r in results if r.get("gpu_peak_mib") is not None]
    return f"{max(peaks):.0f}" if peaks else "-"


def machine(cpu: bool) -> str:
    import torch

    device = "no GPU (--cpu)" if cpu else torch.cuda.get_device_name(0)
    return (f"{device}, Python {platform.python_version()}, torch {torch.__version__}, transformers "
            f"{version('transformers')}, TRL {version('trl')}, accelerate {version('accelerate')}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="the results file (Markdown)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "gpu_check"), help="models, raw JSON, logs")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all sections together")
    parser.add_argument("--cpu", action="store_true", help="toy sizes on a CPU: checks the script itself")
    parser.add_argument("--only", nargs="+", choices=list(NEEDS), default=list(NEEDS))
    args = parser.parse_args()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False); --cpu checks the script")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check = GPUCheck(args)
    started = time.time()
    for section in NEEDS:
        if section not in args.only:
            continue
        if check.left() < NEEDS[section] * (0.1 if args.cpu else 1):
            check.lines += [f"## {section}: skipped, {check.left():.0f} s left of the budget", ""]
            continue
        print(f"{section}: {check.left():.0f} s left", flush=True)
        section_started = time.time()
        try:
            getattr(check, section)()
        except Exception as exc:  # one section's failure must not lose the others' figures
            check.lines += [f"## {section}: failed: {type(exc).__name__}: {exc}", ""]
        print(f"  {section}: {time.time() - section_started:.0f} s", flush=True)
    header = [
        "# GPU check",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine(args.cpu)}, in"
        f" {(time.time() - started) / 60:.1f} min:",
        "",
        f"```\npython benchmarks/gpu_check.py {' '.join(sys.argv[1:])}\n```",
        "",
    ]
    text = "\n".join([*header, *check.lines]) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
