"""Rewards written for TRL as verifiers: in evaluation and in `reasonkit generate`, conversational by
their annotation (or by --completions), with every benchmark column (MATH's `solution`) passed."""

import json
import re
from pathlib import Path

from reasonkit.cli import main
from reasonkit.data import PromptFormat
from reasonkit.data.benchmarks import load_benchmark
from reasonkit.eval.evaluate import sample_and_judge
from reasonkit.eval.generate import GenerateSettings, generate_traces
from reasonkit.eval.schema import BenchmarkSource
from reasonkit.rollout import SamplingSettings
from reasonkit.rollout.base import Rollout

OPEN_R1 = str(Path(__file__).parents[1] / "helpers" / "open_r1_style.py")


class ScriptedTeacher:
    """Answers "What is a * b?" right in its first sample and one too high in the others."""

    def generate(self, prompts, sampling, progress=None, with_logprobs=False):
        rollouts = []
        for index, prompt in enumerate(prompts):
            a, b = map(int, re.search(r"(\d+) \* (\d+)", prompt).groups())
            for k in range(sampling.n):
                product = a * b + (k > 0)
                text = f"<think>{a} * {b} = {product}.</think>The answer is $\\boxed{{{product}}}$."
                rollouts.append(Rollout(index, [0], [1] * len(text), None, text, truncated=False))
        return rollouts


def math_benchmark(path: Path) -> str:
    rows = [
        {"problem": f"What is {a} * 3?", "solution": f"So it is $\\boxed{{{3 * a}}}$.", "level": f"Level {a}"}
        for a in (2, 5)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_trl_reward_as_eval_verifier_reads_the_solution_column(tmp_path, tiny_tokenizer):
    problems = load_benchmark(BenchmarkSource(math_benchmark(tmp_path / "math.jsonl")))
    assert problems[0].verifier_columns()["solution"] == "So it is $\\boxed{6}$."  # the row's, as read
    sampling = SamplingSettings(n=2, temperature=1.0, max_new_tokens=32)
    for verifier, completions in [
        ("trl.rewards:accuracy_reward", "auto"),  # conversational by its annotation
        (f"{OPEN_R1}:accuracy_reward", "auto"),
        ("math", "auto"),
    ]:
        scores = sample_and_judge(
            ScriptedTeacher(),
            tiny_tokenizer,
            PromptFormat(False),
            problems,
            sampling,
            verifier,
            completions=completions,
        ).scores
        assert scores == [1.0, 0.0, 1.0, 0.0], verifier


def test_conversational_verifier_without_annotation_needs_completions_conversational(
    tmp_path, tiny_tokenizer
):
    problems = load_benchmark(BenchmarkSource(math_benchmark(tmp_path / "math.jsonl")))
    sampling = SamplingSettings(n=1, temperature=1.0, max_new_tokens=32)
    scores = sample_and_judge(
        ScriptedTeacher(),
        tiny_tokenizer,
        PromptFormat(False),
        problems,
        sampling,
        f"{OPEN_R1}:format_reward",
        completions="conversational",
    ).scores
    assert scores == [1.0, 1.0]


def test_trl_reward_as_generate_verifier_keeps_the_right_traces(tmp_path, tiny_tokenizer):
    problems = load_benchmark(BenchmarkSource(math_benchmark(tmp_path / "prompts.jsonl")))
    out = tmp_path / "traces.jsonl"
    settings = GenerateSettings(
        num_samples=3, keep="all", verifier="trl.rewards:accuracy_reward", chunk_size=1
    )
    report = generate_traces(ScriptedTeacher(), tiny_tokenizer, PromptFormat(False), problems, out, settings)
    assert (report["kept"], report["wrong"]) == (2, 4)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["trace"], r["answer"]) for r in rows] == [
        ("2 * 3 = 6.", "The answer is $\\boxed{6}$."),
        ("5 * 3 = 15.", "The answer is $\\boxed{15}$."),
    ]


def test_reasonkit_eval_with_a_trl_reward_as_verifier(tmp_path, tiny_model_dir, capsys):
    args = ["eval", str(tiny_model_dir), "--benchmark", math_benchmark(tmp_path / "math.jsonl")]
    args += ["--engine", "transformers"]
    args += [
        "--verifier",
        "trl.rewards:accuracy_reward",
        "--max-new-tokens",
        "4",
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "model.math.results.json").read_text())
    assert result["verifier"] == "trl.rewards:accuracy_reward" and result["n"] == 2
    assert set(result["by_difficulty"]) == {"Level 2", "Level 5"}


def test_a_verifier_needing_a_column_the_benchmark_lacks_stops_before_generating(
    tmp_path, tiny_model_dir, capsys
):
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "What is 2 * 3?", "answer": "6"}) + "\n")
    args = [
        "eval",
        str(tiny_model_dir),
        "--benchmark",
        str(plain),
        "--verifier",
        "trl.rewards:accuracy_reward",
    ]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        "verifier 'trl.rewards:accuracy_reward' needs column(s) ['solution']; the problems have ['answer']"
        in err
    )
    assert not list((tmp_path / "out").glob("*.samples.jsonl"))
