"""`make bench`: reasonkit side by side with what a user would pick instead, on this machine, in one run.

    python benchmarks/bench.py            # everything (about 30 minutes on 2 CPU cores)
    python benchmarks/bench.py --quick    # a few minutes: the smallest case of each section
    python benchmarks/bench.py --only grpo memory

Sections (each side in a process of its own; the GRPO and SFT sides alternate A/B/A/B):
- grpo: step time against TRL's GRPOTrainer at three model shapes, uniform and varied lengths,
  split into generation / scoring / log-probs (reference, old) / optimisation, and peak memory;
- grpo_tools: the same with the calculator as a tool on both sides, a model fine-tuned to call it;
- rollout: our vLLM engine's tokens/s against raw `vllm.LLM.generate` (skipped without vLLM);
- rewards: `math` and `code` verifications per second, in-process serial and through our pool;
- sft: tokens/s and padding of our distillation stage against TRL's SFTTrainer defaults;
- memory: peak memory of one micro-batch's log-prob forward + backward at Qwen's vocabulary, the LM
  head in chunks against the whole ``[tokens, V]`` logits.

The tables go to `runs/bench/report.md` and replace the generated part of BENCHMARKS.md (with
`--write`); raw results are in `runs/bench/*.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ROOT, build_model, build_tool_model, median, parameter_count  # noqa: E402

SECTIONS = ["grpo", "grpo_tools", "rollout", "rewards", "sft", "memory", "grpo_vllm"]
# make bench; grpo_vllm is make bench-vllm, its tables in a block of BENCHMARKS.md of their own
DEFAULT_SECTIONS = SECTIONS[:6]
# The marked block of BENCHMARKS.md a section's tables go to, else "bench": a block is replaced whole, so a
# section with a block of its own can be re-measured alone (`--only grpo_tools --write`).
BLOCKS = {"grpo_tools": "bench-tools", "grpo_vllm": "bench-vllm"}
# (shape, layers on a CPU, B, G, max new tokens, steps, steps left out of the median, A/B repeats)
GRPO_CASES = [
    ("tiny", None, 16, 8, 48, 6, 2, 2),
    ("25m", None, 16, 8, 48, 3, 1, 2),
    ("qwen0.5b", 4, 4, 4, 32, 3, 1, 1),  # about 3 min a run on a CPU
]
GRPO_QUICK = [("tiny", None, 8, 4, 24, 3, 1, 1)]
# With the calculator (common.build_tool_model): a call, its result and the answer take ~30 of the tokens
# (~15 of them the model's), so 48 leaves room for a second call.
GRPO_TOOLS_CASES = [("tiny", None, 16, 8, 48, 6, 2, 2)]
GRPO_TOOLS_QUICK = [("tiny", None, 8, 4, 48, 3, 1, 1)]
MAX_TOOL_CALLS = 5  # reasonkit's default max_calls
# vLLM on both sides (TRL's colocated path through benchmarks/trl_vllm_cpu_shim.py)
GRPO_VLLM_CASES = [
    ("tiny", None, 16, 8, 48, 6, 2, 2),
    ("25m", None, 16, 8, 48, 4, 1, 2),
]
# vLLM's CPU KV cache, the same for both sides: TRL's colocated LLM would otherwise reserve its default
# memory fraction (0.3 of the machine's memory) and reasonkit's engine 0.5 GB.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


class Bench:
    def __init__(self, args):
        self.args, self.out = args, Path(args.output).resolve()  # the sides run in benchmarks/
        self.out.mkdir(parents=True, exist_ok=True)
        self.models = self.out / "models"
        self.report: list[str] = []

    def child(
        self, script: str, name: str, *arguments, threads: int = 1, env: dict | None = None, timeout=None
    ) -> dict:
        """Run one side in its own process (ended after ``timeout`` seconds); its result, or what went wrong."""
        result_file = self.out / f"{name}.json"
        result_file.unlink(missing_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
               "TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", **(env or {})}  # fmt: skip
        started = time.time()
        try:
            done = subprocess.run(
                [sys.executable, str(HERE / script), *map(str, arguments), "--out", str(result_file)],
                capture_output=True, text=True, env=env, cwd=HERE, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(
                errors="replace"
            )
            (self.out / f"{name}.log").write_text(output)
            return {"error": f"stopped after {timeout:.0f} s; see {self.out / (name + '.log')}"}
        print(f"  {name}: {time.time() - started:.0f} s", flush=True)
        if done.returncode != 0 or not result_file.exists():
            (self.out / f"{name}.log").write_text(done.stdout + done.stderr)
            return {"error": f"exit {done.returncode}; see {self.out / (name + '.log')}"}
        return json.loads(result_file.read_text())

    def model(self, shape: str, layers: int | None, stop_rate: float | None = None) -> Path:
        name = f"{shape}-{layers or 'all'}" + (f"-stopping{stop_rate:.3f}" if stop_rate else "")
        return build_model(shape, self.models / name, layers=layers, stop_rate=stop_rate)

    def tool_model(self, shape: str) -> Path:
        return build_tool_model(shape, self.models / f"{shape}-calculator")

    def grpo(self) -> None:
        self.report += grpo_table(
            self.grpo_runs(GRPO_QUICK if self.args.quick else GRPO_CASES, "transformers")
        )

    def grpo_tools(self) -> None:
        cases = GRPO_TOOLS_QUICK if self.args.quick else GRPO_TOOLS_CASES
        self.report += grpo_tools_table(self.grpo_runs(cases, "transformers", tools=True))

    def grpo_vllm(self) -> None:
        self.report += grpo_vllm_table(
            self.grpo_runs(GRPO_QUICK if self.args.quick else GRPO_VLLM_CASES, "vllm")
        )

    def grpo_runs(self, cases, engine: str, tools: bool = False) -> list:
        """Both sides of every case, uniform and varied (with ``tools``: the tool model's one regime),
        A/B/A/B; a row of results per case and regime."""
        rows = []
        for shape, layers, B, G, T, steps, warmup, repeats in cases:
            if self.args.shapes and shape not in self.args.shapes:
                continue
            repeats = self.args.repeats or repeats
            regimes = ["calculator"] if tools else ["uniform"] if self.args.quick else ["uniform", "varied"]
            for regime in regimes:
                if tools:
                    model = self.tool_model(shape)
                else:  # varied: the same shape, made to stop at a constant rate per token (common.py)
                    model = self.model(shape, layers, stop_rate=3 / T if regime == "varied" else None)
                common = ["--model", model, "--prompts", B, "--generations", G,
                          "--max-new-tokens", T, "--steps", steps, "--warmup", warmup,
                          "--trl-micro-batch", min(16, B * G), "--engine", engine,
                          "--tools", MAX_TOOL_CALLS if tools else 0]  # fmt: skip
                env = VLLM_ENV if engine == "vllm" else None
                runs = {"reasonkit": [], "trl": []}
                for repeat in range(repeats):  # A/B/A/B
                    for side in runs:
                        name = f"grpo{'-vllm' if engine == 'vllm' else ''}-{shape}-{regime}-{side}-{repeat}"
                        runs[side].append(self.child("grpo_step.py", name, "--side", side, *common, env=env))
                rows.append((shape, layers, model, regime, B, G, T, runs))
        return rows

    def rollout(self) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError:
            self.report += ["## Rollout: vLLM engine vs raw vLLM", "", "vLLM is not installed: skipped.", ""]
            return
        model = self.model("tiny" if self.args.quick else "25m", None)
        runs = {"reasonkit": [], "vllm": []}
        for repeat in range(1 if self.args.quick else 2):
            for side in runs:
                runs[side].append(self.child("rollout_vllm.py", f"rollout-{side}-{repeat}", "--side", side,
                                             "--model", model, "--calls", 2 if self.args.quick else 5))  # fmt: skip
        self.report += rollout_table(runs, model)

    def rewards(self) -> None:
        result = self.child("reward_rates.py", "rewards", "--samples", 32 if self.args.quick else 128)
        self.report += reward_table(result, self.out)

    def sft(self) -> None:
        model = self.model("tiny" if self.args.quick else "25m", None)
        steps = 8 if self.args.quick else 24  # 22 timed steps: the median settles, and make bench fits 30 min
        runs = {"reasonkit": [], "trl": [], "reasonkit, length_grouped": []}
        for repeat in range(1 if self.args.quick else 2):
            for side in runs:
                extra = ["--length-grouped"] if "grouped" in side else []
                name = f"sft-{side.split(',')[0]}{'-grouped' if extra else ''}-{repeat}"
                runs[side].append(self.child("sft_step.py", name, "--side", side.split(",")[0], "--model", model,
                                             "--steps", steps, "--warmup", 2, *extra))  # fmt: skip
        self.report += sft_table(runs, model)

    def memory(self) -> None:
        tokens = [512] if self.args.quick else self.args.memory_tokens
        self.model("qwen0.5b", 2)
        results = []
        for count in tokens:
            for head in ["chunked", "whole"]:
                extra = ["--whole"] if head == "whole" else []
                results.append(self.child("logprob_memory.py", f"memory-{count}-{head}", "--tokens", count,
                                          "--model-dir", self.models, *extra, threads=2))  # fmt: skip
        self.report += memory_table(results)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def medians(runs: list[dict], key: str) -> float:
    values = [r["median"][key] for r in runs if "median" in r]
    return median(values) if values else float("nan")


GRPO_INTRO = (
    "Median step after warm-up (CPU seconds of the one-thread process; wall seconds where the machine"
    " was quiet are the same), split into {phases} (the rest), and each process's peak memory."
    " Ratio: reasonkit / TRL (below 1: we are faster)."
)


def grpo_table(rows) -> list[str]:
    phases = ["generation", "scoring", "logprobs", "optimisation"]  # no weight sync: the engine is the policy
    return [
        "## GRPO step: reasonkit vs TRL's GRPOTrainer (transformers generation on both sides)",
        "",
        GRPO_INTRO.format(phases="generation / scoring / reference log-probs / optimisation"),
        "",
        "| shape | params | regime | B x G, tokens | mean length (rk / TRL) | reasonkit step (gen / score / logp / opt) | TRL step (gen / score / logp / opt) | ratio | peak MiB (rk / TRL) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(grpo_row(row, phases) for row in rows),
        "",
    ]


def grpo_tools_table(rows) -> list[str]:
    phases = ["generation", "scoring", "logprobs", "optimisation"]
    return [
        "## GRPO step with a tool: the calculator on both sides (transformers generation)",
        "",
        GRPO_INTRO.format(
            phases="generation (tools run, turns after them) / scoring / reference log-probs / optimisation"
        )
        + " Lengths: the model's tokens per completion (tool results left out, on both sides); calls and"
        " reward (1: the answer is right) per completion, averaged over the steps.",
        "",
        "| shape | params | tool | B x G, tokens | mean length (rk / TRL) | calls (rk / TRL) | reward (rk / TRL) | reasonkit step (gen / score / logp / opt) | TRL step (gen / score / logp / opt) | ratio | peak MiB (rk / TRL) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(grpo_row(row, phases, extra=("calls_per_completion", "mean_reward")) for row in rows),
        "",
    ]


def grpo_vllm_table(rows) -> list[str]:
    phases = ["generation", "sync", "scoring", "logprobs", "optimisation"]
    gaps = [
        f"{row[0]} {row[3]}: {' / '.join(sampler_gap(row[7][side]) for side in ('reasonkit', 'trl'))}"
        for row in rows
    ]
    return [
        '## GRPO step with vLLM on both sides: reasonkit `engine: vllm` vs TRL `use_vllm=True, vllm_mode="colocate"`',
        "",
        GRPO_INTRO.format(
            phases="generation / weight sync into vLLM / scoring / log-probs (reference, old) / optimisation"
        ),
        "",
        "| shape | params | regime | B x G, tokens | mean length (rk / TRL) | reasonkit step (gen / sync / score / logp / opt) | TRL step (gen / sync / score / logp / opt) | ratio | peak MiB (rk / TRL) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(grpo_row(row, phases) for row in rows),
        "",
        "Both samplers in float32; the largest per-step mean |trainer - sampler| log-prob per token"
        f" (rk / TRL): {'; '.join(gaps)}.",
        "",
    ]


def sampler_gap(results: list[dict]) -> str:
    gaps = [r["sampler_gap"] for r in results if r.get("sampler_gap") is not None]
    return f"{max(gaps):.0e}" if gaps else "-"


def grpo_row(row, phases: list[str], clock: str = "cpu", extra: tuple[str, ...] = ()) -> str:
    """One table row: each side's median step and phases (``clock``: cpu or wall seconds), the ratio,
    lengths, the median of each result in ``extra`` (a cell each, after the lengths) and peak memory."""
    shape, layers, model, regime, B, G, T, runs = row
    averaged = ["mean_completion_length", *extra]
    cells = {}
    for side, results in runs.items():
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            nothing = [float("nan")] * len(averaged)
            cells[side] = (f"failed: {errors[0]}", float("nan"), float("nan"), nothing)
            continue
        parts = [medians(results, f"{p}_{clock}") for p in phases]
        step = medians(results, f"step_{clock}")
        text = f"{step:.2f} s ({' / '.join(f'{p:.2f}' for p in parts)})"
        averages = [median([nan_if_none(r.get(key)) for r in results]) for key in averaged]
        cells[side] = (text, step, max(r["peak_rss_mib"] for r in results), averages)
    name = f"{shape} ({layers} layers)" if layers else shape
    # lengths in tokens to one decimal; the rest (calls, rewards per completion) to two
    both = [
        f"{rk:.{1 if k == 0 else 2}f} / {trl:.{1 if k == 0 else 2}f}"
        for k, (rk, trl) in enumerate(zip(cells["reasonkit"][3], cells["trl"][3]))
    ]
    return (
        f"| {name} | {parameter_count(model) / 1e6:.1f}M | {regime} | {B} x {G}, {T} | {' | '.join(both)} | "
        f"{cells['reasonkit'][0]} | {cells['trl'][0]} | **{ratio(cells['reasonkit'][1], cells['trl'][1])}** | "
        f"{cells['reasonkit'][2]:.0f} / {cells['trl'][2]:.0f} |"
    )


def nan_if_none(value) -> float:
    return float("nan") if value is None else value


def rollout_table(runs, model) -> list[str]:
    rate = {
        side: median([r.get("tokens_per_second", float("nan")) for r in results])
        for side, results in runs.items()
    }
    return [
        "## Rollout: reasonkit's vLLM engine vs raw `vllm.LLM.generate`",
        "",
        f"Model `{model.name}` ({parameter_count(model) / 1e6:.1f}M), 16 prompts x 8, 48 new tokens, temperature 1,"
        " sampled token's log-prob; generated tokens per second over the calls after a warm-up, median of the runs.",
        "",
        "| reasonkit engine | raw vLLM | share of raw |",
        "|---|---|---|",
        f"| {rate['reasonkit']:.0f} tokens/s | {rate['vllm']:.0f} tokens/s | **{rate['reasonkit'] / rate['vllm']:.0%}** |",
        "",
    ]


def reward_table(result: dict, out: Path) -> list[str]:
    if "error" in result:
        return ["## Reward scoring", "", f"failed: {result['error']}", ""]
    steps = {}  # shape: (completions per step, median step seconds)
    for path in sorted(out.glob("grpo-*-uniform-reasonkit-*.json")):
        if path.name.startswith("grpo-vllm-"):  # make bench-vllm's, in the same folder
            continue
        data = json.loads(path.read_text())
        if "median" in data:
            shape = path.name.split("-uniform")[0].removeprefix("grpo-")
            steps.setdefault(shape, (data["completions_per_step"], data["median"]["step_cpu"]))
    lines = [
        "## Reward scoring: verifications per second",
        "",
        f"{result['samples']} completions each; pool: {result['workers']} worker processes (one per core),"
        " each call with a time limit, `code` programs each run in the sandbox (2 tests per completion).",
        "",
        "| reward | in-process, serial | reasonkit pool | share of a GRPO step (its B x G completions) at each shape |",
        "|---|---|---|---|",
    ]
    for kind in ["math", "code"]:
        pool = result[kind]["pool_per_second"]
        share = ", ".join(
            f"{shape}: {n / pool / (step + n / pool):.0%}" for shape, (n, step) in steps.items()
        )
        lines.append(
            f"| {kind} | {result[kind]['serial_per_second']:.1f}/s | {pool:.1f}/s | {share or '-'} |"
        )
    return [*lines, ""]


def sft_table(runs, model) -> list[str]:
    lines = [
        "## SFT: reasonkit's distillation stage vs TRL's SFTTrainer defaults (no packing on either side)",
        "",
        f"Model `{model.name}` ({parameter_count(model) / 1e6:.1f}M), batch 32, arithmetic traces (a fifth"
        " without the working, so lengths vary about 3x); real (non-padding) tokens per second over the"
        " steps after warm-up, median of the runs.",
        "",
        "| trainer | tokens/s | padding | ratio to TRL |",
        "|---|---|---|---|",
    ]
    rates = {
        side: median([r.get("tokens_per_second", float("nan")) for r in results])
        for side, results in runs.items()
    }
    for side, results in runs.items():
        padding = median([r.get("padding_share", float("nan")) for r in results])
        lines.append(
            f"| {side} | {rates[side]:.0f} | {padding:.1%} | **{rates[side] / rates['trl']:.2f}x** |"
        )
    return [*lines, ""]


def memory_table(results) -> list[str]:
    lines = [
        "## Log-prob pass memory at Qwen2.5's vocabulary (151,936)",
        "",
        "One micro-batch's forward + backward (log-probs and entropy), Qwen2.5-0.5B width with 2 layers, rows"
        " of 512 tokens; peak RSS of the process above the loaded model, and the pass's seconds (2 threads).",
        "",
        "| tokens | LM head | peak above the model | seconds |",
        "|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| | | failed: {r['error']} | |")
        elif "failed" in r:
            lines.append(f"| {r['tokens']:,} | {r['head']} | {r['failed']} | |")
        else:
            lines.append(
                f"| {r['tokens']:,} | {r['head']} | {r['pass_mib'] / 1024:.2f} GiB | {r['seconds']:.0f} |"
            )
    return [*lines, ""]


def machine() -> str:
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), ""
    )
    return (f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {version('transformers')}, TRL {version('trl')}, vLLM {version('vllm-cpu', 'vllm')}")  # fmt: skip


def version(*packages: str) -> str:
    """The installed version of the first of ``packages`` (distribution names) that is installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    for package in packages:
        try:
            return f"{installed(package)} ({package})" if len(packages) > 1 else installed(package)
        except PackageNotFoundError:
            continue
    return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the smallest case of each section (a few minutes)"
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=DEFAULT_SECTIONS)
    parser.add_argument(
        "--shapes", nargs="+", choices=[case[0] for case in GRPO_CASES], help="grpo, grpo_vllm: only these"
    )
    parser.add_argument("--repeats", type=int, default=None, help="grpo: A/B repeats of every case")
    parser.add_argument("--memory-tokens", nargs="+", type=int, default=[4096])
    parser.add_argument("--output", default=str(ROOT / "runs" / "bench"))
    parser.add_argument("--write", action="store_true", help="replace the generated part of BENCHMARKS.md")
    args = parser.parse_args()
    bench = Bench(args)
    started = time.time()
    reports: dict[str, list[str]] = {}  # block of BENCHMARKS.md: its tables
    for section in SECTIONS:
        if section in args.only:
            print(f"{section}:", flush=True)
            bench.report = reports.setdefault(BLOCKS.get(section, "bench"), [])
            getattr(bench, section)()
    command = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
    texts = []
    for block, report in reports.items():
        header = [markers(block)[0], "", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, in {(time.time() - started) / 60:.0f} min:",
                  "", f"```\n{command.strip()}\n```", ""]  # fmt: skip
        texts.append((block, "\n".join([*header, *report, markers(block)[1]]) + "\n"))
    (bench.out / "report.md").write_text("\n".join(text for _, text in texts))
    print("\n".join(text for _, text in texts))
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        current = path.read_text()
        for block, text in texts:
            current = replace_block(current, block, text)
        path.write_text(current)


def markers(block: str) -> tuple[str, str]:
    return f"<!-- make {block}: begin -->", f"<!-- make {block}: end -->"


def replace_block(document: str, block: str, text: str) -> str:
    """``document`` with its generated ``block`` (between the block's markers, markers included) replaced
    by ``text``, or ``text`` appended where the document has no such block yet.
    """
    begin, end = markers(block)
    if begin not in document:
        return document + "\n" + text
    return document[: document.index(begin)] + text + document[document.index(end) + len(end) + 1 :]


if __name__ == "__main__":
    main()
