"""`reasonkit rewards check`: every built-in reward passes its battery; lax ones are caught."""

import json

import pytest

import rewards
from reasonkit.cli import main


@pytest.mark.parametrize("name", rewards.known())
def test_every_builtin_reward_passes_its_battery(name, capsys):
    assert main(["rewards", "check", name]) == 0, capsys.readouterr().out


def test_a_lax_answer_reward_is_caught(tmp_path, capsys):
    lax = tmp_path / "lax.py"
    lax.write_text(
        "def gold_anywhere(prompts, completions, answer, **kw):\n"
        "    return [float(a in c) for c, a in zip(completions, answer)]\n"
    )
    assert main(["rewards", "check", f"{lax}:gold_anywhere"]) == 1
    out = capsys.readouterr().out
    for case in ("answer only inside the think block", "the gold answer spammed", "two different answers"):
        assert f"HOLE: row 0 (prompt 'What is 6 * 7?'), {case}: scored 1.0 against the reference's 1.0" in out
    assert "hole(s)" in out and "do not train with this reward" in out


def test_user_rows_with_gold_answers_the_verifier_cannot_read_fail_the_check(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    rows = [
        {"prompt": "Half of one?", "answer": "\\frac{1}{2}"},
        {"prompt": "Which?", "answer": "see the solution"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["rewards", "check", "exact_answer", "--data", str(data)]) == 0  # strings compare as strings
    capsys.readouterr()
    assert main(["rewards", "check", "math", "--data", str(data), "--max-rows", "1"]) == 0
    capsys.readouterr()
    rows[1]["answer"] = "\\frac{"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["rewards", "check", "math", "--data", str(data)]) == 1
    assert "REFUSED REFERENCE: row 4 (prompt 'Which?')" in capsys.readouterr().out


def test_code_rows_with_a_single_test_are_hackable(tmp_path, capsys):
    data = tmp_path / "code.jsonl"
    data.write_text(json.dumps({"prompt": "Print 7.", "tests": json.dumps([{"input": "", "output": "7\n"}])}))
    assert main(["rewards", "check", "code", "--data", str(data)]) == 1
    assert (
        "HOLE: row 2 (prompt 'Print 7.'), prints the first test's expected output" in capsys.readouterr().out
    )


def test_data_without_the_needed_column_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "1"}))
    assert main(["rewards", "check", "math", "--data", str(data)]) == 2
    assert "has no column(s) ['prompt'] (it has ['answer', 'question'])" in capsys.readouterr().err
