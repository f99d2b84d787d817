"""Evaluation: the metric functions, the benchmark shapes, and an eval stage on local benchmark files."""

import itertools
import json
import math

import pytest

import rewards as reward_registry
from reasonkit.data import DataError, PromptFormat
from reasonkit.data.benchmarks import Problem, load_benchmark
from reasonkit.eval.evaluate import problem_metrics
from reasonkit.eval.metrics import bootstrap_interval, majority_correct, pass_at_k
from reasonkit.eval.schema import BenchmarkSource, EvalStage
from reasonkit.models import load_model, load_tokenizer
from reasonkit.pipeline import run_recipe
from reasonkit.recipe import build_recipe
from tests.conftest import TINY_SIZES


@pytest.mark.parametrize("n, c, k", [(5, 2, 1), (5, 2, 2), (6, 1, 3), (4, 4, 2), (4, 0, 4)])
def test_pass_at_k_is_the_chance_that_k_of_the_n_samples_hold_a_correct_one(n, c, k):
    samples = [True] * c + [False] * (n - c)
    draws = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))


def test_pass_at_k_refuses_more_draws_than_samples():
    with pytest.raises(ValueError, match="1 <= k <= the 2 samples"):
        pass_at_k(2, 1, 3)


def test_majority_vote_counts_only_readable_answers_and_the_first_k():
    assert majority_correct(["7", None, None, "8"], [True, False, False, False], 4) == 1.0
    assert majority_correct(["8", "7", "7"], [False, True, True], 1) == 0.0
    assert majority_correct(["8", "7", "7"], [False, True, True], 3) == 1.0
    assert majority_correct([None, None], [False, False], 2) == 0.0


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_problems():
    few, many = [1.0, 0.0] * 10, [1.0, 0.0] * 500
    low, high = bootstrap_interval(few)
    assert low < 0.5 < high
    low_many, high_many = bootstrap_interval(many)
    assert high_many - low_many < (high - low) / 4
    assert bootstrap_interval(few) == (low, high)  # seeded
    assert all(math.isnan(x) for x in bootstrap_interval([1.0]))


def test_problem_metrics_on_known_samples():
    stage = EvalStage(num_samples=4, k=[1, 4], temperature=1.0)
    samples = [
        (["5", "5", "6", "5"], [True, True, False, True]),  # 3 of 4 right; majority right
        (["1", "2", "2", None], [True, False, False, False]),  # 1 of 4; majority wrong
    ]
    metrics = problem_metrics(samples, stage)
    assert metrics["pass@1"]["value"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert metrics["pass@4"]["value"] == 1.0
    assert metrics["maj@4"]["value"] == 0.5
    assert metrics["maj@1"]["value"] == 1.0  # the first sample of each is right
    assert metrics["accuracy"] == metrics["pass@1"]["value"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_benchmark_shapes_are_read_by_their_columns(tmp_path):
    gsm8k = write_jsonl(
        tmp_path / "gsm8k.jsonl", [{"question": "Q?", "answer": "Work: 2 * 600 = 1200\n#### 1,200"}]
    )
    math_ = write_jsonl(
        tmp_path / "math.jsonl",
        [{"problem": "P?", "solution": r"So $\boxed{\frac{1}{2}}$.", "level": "Level 2"}],
    )
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "X?", "answer": " 42 "}])
    code = write_jsonl(
        tmp_path / "code.jsonl", [{"prompt": "Echo.", "tests": [{"input": "a\n", "output": "a\n"}]}]
    )
    (problem,) = load_benchmark(BenchmarkSource(str(code)))
    assert problem.answer is None and json.loads(problem.tests) == [{"input": "a\n", "output": "a\n"}]
    (problem,) = load_benchmark(BenchmarkSource(str(gsm8k)))
    assert (problem.prompt, problem.answer, problem.difficulty) == ("Q?", "1200", None)
    (problem,) = load_benchmark(BenchmarkSource(str(math_)))
    assert (problem.answer, problem.difficulty) == (r"\frac{1}{2}", "Level 2")
    (problem,) = load_benchmark(BenchmarkSource(str(plain)))
    assert problem.answer == "42"


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"question": "Q?", "answer": "no final line"}],
            r"gsm8k\): no final answer in 1 row\(s\) \(0\): no `####`",
        ),
        ([{"problem": "P?", "solution": "no box"}], r"no \\boxed"),
        ([{"text": "?"}], r"cannot tell its shape from columns \['text'\]"),
    ],
)
def test_unreadable_benchmarks_say_what_is_wrong(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_benchmark(BenchmarkSource(str(write_jsonl(tmp_path / "bench.jsonl", rows))))


def test_eval_stage_on_benchmark_files_records_decoding_verifier_and_levels(tmp_path):
    rows = [
        {"problem": f"What is {a} * 3?", "solution": rf"\boxed{{{a * 3}}}", "level": f"Level {a % 2}"}
        for a in range(12)
    ]
    bench = write_jsonl(tmp_path / "mathlike.jsonl", rows)
    recipe = build_recipe(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"tiny": TINY_SIZES},
            "data": {"task": "arithmetic", "arithmetic": {"test_size": 10, "train_size": 50}},
            "stages": {
                "eval": {
                    "type": "eval",
                    "models": ["model"],
                    "benchmarks": [{"path": str(bench), "name": "mathlike"}],
                    "verifier": "math",
                    "num_samples": 2,
                    "k": [1, 2],
                    "temperature": 1.0,
                    "max_new_tokens": 6,
                    "seed": 0,
                    "engine": "transformers",
                }
            },
        }
    )
    summary = run_recipe(recipe)
    result = summary["stages"]["eval"]["models"]["model"]["mathlike"]
    assert result["n"] == 12 and set(result["by_difficulty"]) == {"Level 0", "Level 1"}
    assert result["by_difficulty"]["Level 0"]["n"] == 6
    saved = json.loads((tmp_path / "run" / "eval" / "model.mathlike.results.json").read_text())
    assert saved["verifier"] == "math"
    decoding = {
        key: saved["decoding"][key]
        for key in ("temperature", "top_p", "max_new_tokens", "num_samples", "seed")
    }
    assert decoding == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "num_samples": 2, "seed": 0}
    assert {"pass@1", "pass@2", "maj@2"} <= set(saved)
    lines = (tmp_path / "run" / "eval" / "model.mathlike.samples.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 12 and len(first["completions"]) == 2 and first["gold"] == "0"


def test_eval_command_writes_results_and_a_table(tiny_model_dir, tmp_path, capsys):
    from reasonkit.cli import main

    rows = [{"question": f"What is {a} * 2?", "answer": f"{a} * 2\n#### {2 * a}"} for a in range(6)]
    bench = write_jsonl(tmp_path / "gsmlike.jsonl", rows)
    out = tmp_path / "results"
    common = [
        "eval",
        str(tiny_model_dir),
        "--benchmark",
        str(bench),
        "--output",
        str(out),
        "--engine",
        "transformers",
    ]
    assert (
        main([*common, "--num-samples", "2", "--k", "1", "2", "--temperature", "1", "--max-new-tokens", "4"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "gsmlike" in printed and "pass@2" in printed and "maj@2" in printed
    saved = json.loads((out / "model.gsmlike.results.json").read_text())
    assert saved["n"] == 6 and saved["verifier"] == "exact_answer" and saved["decoding"]["num_samples"] == 2
    assert len((out / "model.gsmlike.samples.jsonl").read_text().splitlines()) == 6

    assert main([*common, "--num-samples", "2", "--k", "4", "--temperature", "1"]) == 2
    assert "raise num_samples to 4" in capsys.readouterr().err


def test_code_problems_are_judged_by_their_tests(tiny_model_dir, tmp_path):
    from reasonkit.eval.evaluate import sample_and_judge
    from reasonkit.rollout import SamplingSettings, TransformersEngine

    tests = json.dumps([{"input": "2 3\n", "output": "5\n"}])
    problems = [Problem("Add two numbers.", None, tests=tests)]
    tokenizer = load_tokenizer(str(tiny_model_dir))
    engine = TransformersEngine(load_model(str(tiny_model_dir)), tokenizer)
    sampling = SamplingSettings(n=2, temperature=1.0, max_new_tokens=4, seed=0)
    judged = sample_and_judge(
        engine, tokenizer, PromptFormat(think_prefilled=False), problems, sampling, "code_all"
    )
    assert len(judged.responses) == 2 and judged.scores == [0.0, 0.0]  # no code block: no test passes
    right = "<think>add</think>```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert reward_registry.get("code_all")(["Add two numbers."], [right], tests=[tests]) == [1.0]
