"""Teacher-trace generation: the filters on known completions, decontamination, and a tiny model as
the teacher through the command, interrupted and resumed."""

import json

import pytest

from reasonkit.cli import main
from reasonkit.eval import generate
from reasonkit.eval.generate import Candidate, Decontaminator, select

RIGHT = Candidate("7 * 6 = 42.", "42", correct=True, truncated=False, num_tokens=12)
RIGHT_SHORT = Candidate("42.", "42", correct=True, truncated=False, num_tokens=5)
WRONG = Candidate("7 * 6 = 41.", "41", correct=False, truncated=False, num_tokens=12)
TRUNCATED = Candidate("7 * 6 = ", None, correct=False, truncated=True, num_tokens=64)
CUT_BUT_RIGHT = Candidate("7 * 6 = 42.", "42", correct=True, truncated=True, num_tokens=64)
UNREADABLE = Candidate(None, None, correct=False, truncated=False, num_tokens=9)
LONG_RIGHT = Candidate("a long way to 42." * 10, "42", correct=True, truncated=False, num_tokens=90)
ALL = [WRONG, RIGHT, TRUNCATED, CUT_BUT_RIGHT, UNREADABLE, LONG_RIGHT, RIGHT_SHORT]


@pytest.mark.parametrize(
    "keep, budget, expected",
    [
        ("first", None, [RIGHT]),
        ("all", None, [RIGHT, LONG_RIGHT, RIGHT_SHORT]),
        ("shortest", None, [RIGHT_SHORT]),
        ("all", 50, [RIGHT, RIGHT_SHORT]),  # the long one is over the budget
    ],
)
def test_only_verified_untruncated_traces_within_budget_are_kept(keep, budget, expected):
    kept, counts = select(ALL, keep, budget)
    assert kept == expected
    assert (
        counts["sampled"] == 7 and counts["wrong"] == 1 and counts["unreadable"] == 2
    )  # TRUNCATED has no answer
    assert counts["truncated"] == 1  # a right answer cut at the token limit is still dropped
    assert counts["over_budget"] == (1 if budget else 0)
    assert counts["kept"] + counts["not_chosen"] == 3 - counts["over_budget"]


def test_a_tool_conversation_with_a_call_that_could_not_be_read_is_unreadable():
    def called(name):
        turn = {
            "role": "assistant",
            "content": "<think>",
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": {}}}],
        }
        return [
            {"role": "user", "content": "q"},
            turn,
            {"role": "tool", "name": name or "unknown", "content": "1"},
        ]

    read = Candidate("x", "42", correct=True, truncated=False, num_tokens=9, messages=called("calculator"))
    unread = Candidate("x", "42", correct=True, truncated=False, num_tokens=9, messages=called(""))
    kept, counts = select([unread, read], "all", None)
    assert kept == [read] and counts["unreadable"] == 1


def test_decontamination_flags_shared_ngrams_only():
    eval_question = (
        "A train leaves the station at 3 pm travelling at 60 miles per hour towards a city 180 miles away"
    )
    guard = Decontaminator([eval_question, "What is 2 + 2?"], n=13)
    assert guard.contaminated(
        "Question: a train leaves the station at 3 pm travelling at 60 miles per hour towards a city. When?"
    )
    assert not guard.contaminated(
        "A car leaves home at 3 pm travelling at 40 miles per hour towards a town 120 miles away"
    )
    assert guard.contaminated("what is 2 + 2")  # shorter than n words: compared whole
    assert not guard.contaminated("What is 2 + 3?")


def test_generate_with_a_tiny_teacher_resumes_without_duplicates(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"What is {a} * 3?", "answer": str(3 * a)}) + "\n" for a in range(6))
    )
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(json.dumps({"prompt": "What is 5 * 3?", "answer": "15"}) + "\n")
    out = tmp_path / "traces.jsonl"
    args = [
        "generate",
        str(tiny_model_dir),
        "--prompts",
        str(prompts),
        "--output",
        str(out),
        "--engine",
        "transformers",
    ]
    args += ["--num-samples", "2", "--max-new-tokens", "6", "--chunk-size", "2", "--dtype", "float32"]
    args += ["--decontaminate", str(evalset), "--keep", "all", "--verifier", "think_tags"]

    real_chunk, calls = generate._generate_chunk, {"n": 0}

    def dies_on_the_second_chunk(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_chunk(*a, **k)

    monkeypatch.setattr(generate, "_generate_chunk", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    progress = json.loads((tmp_path / "traces.jsonl.progress.json").read_text())
    assert progress["done"] == 2 and progress["counts"]["sampled"] == 4
    with out.open("a") as f:  # a row of the unfinished chunk, written before the kill
        f.write(json.dumps({"prompt": "What is 2 * 3?", "prompt_index": 2}) + "\n")

    monkeypatch.setattr(generate, "_generate_chunk", real_chunk)
    assert main(args) == 0
    report = json.loads((tmp_path / "traces.jsonl.progress.json").read_text())["counts"]
    assert report["prompts_contaminated"] == 1  # "What is 5 * 3?" is in the evaluation set
    assert report["sampled"] == 2 * 5  # each clean prompt sampled once, across the interruption
    assert (
        sum(
            report.get(k, 0)
            for k in ["unreadable", "truncated", "over_budget", "wrong", "not_chosen", "kept"]
        )
        == 10
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["prompt_index"] != 2 or "trace" in r for r in rows)  # the stray row was dropped
    assert len(rows) == report.get("kept", 0)
    assert "kept" in capsys.readouterr().out
