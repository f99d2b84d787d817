"""`reasonkit rewards check`: every built-in reward passes its battery; lax ones are caught; each
verdict line says which score it was judged against and whose it is."""

import json
import pickle

import pytest

import rewards
import rewards.check
import rewards.convention
from reasonkit.cli import main
from rewards.check import format_row, run_check
from rewards.convention import DecidedShape, call_reward, describe_error


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
        assert (
            f"HOLE: row 0 (prompt 'What is 6 * 7?'), {case}: scored 1.0, not below 1.0, the score of the "
            "row's best correct form ('reference: the gold answer after the think block')"
        ) in out
    # The correct forms score full marks: holes beside them do not make them refusals.
    assert "REFUSED" not in out and "0 other correct form(s) refused" in out
    assert "do not train with this reward until its holes are closed\n" in out


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


def write_reward(tmp_path, scores: dict[str, float], default: float = 0.0) -> str:
    """A reward scoring the format battery's cases by name, as ``scores`` says."""
    by_completion = {case.completion: scores.get(case.name, default) for case in format_row().cases}
    path = tmp_path / "by_case.py"
    path.write_text(
        f"SCORES = {by_completion!r}\n"
        "def by_case(prompts, completions, **kwargs):\n"
        "    return [SCORES[c] for c in completions]\n"
    )
    return f"{path}:by_case"


def verdicts_by_case(spec: str) -> dict:
    return {v.case.name: v for v in run_check(spec, [format_row()], workers=0, timeout=10)}


REFERENCE, LONGER = "reference: one think block, then the answer", "a longer answer"


def test_a_correct_form_at_the_bar_is_not_refused_though_a_hack_scores_as_high(tmp_path):
    verdicts = verdicts_by_case(write_reward(tmp_path, {REFERENCE: 1.0, LONGER: 1.0, "empty answer": 1.0}))
    assert verdicts[REFERENCE].kind == verdicts[LONGER].kind == "ok"
    hole = verdicts["empty answer"]
    assert (hole.kind, hole.bar.score, hole.bar.case.name) == ("hole", 1.0, REFERENCE)


def test_a_correct_form_is_refused_only_when_no_higher_than_a_rejected_completion(tmp_path):
    # Below the bar but above every rejected completion: partial credit, not a refusal.
    graded = {REFERENCE: 1.0, LONGER: 0.7, "no think block": 0.5}
    assert verdicts_by_case(write_reward(tmp_path, graded))[LONGER].kind == "ok"
    refused = verdicts_by_case(write_reward(tmp_path, {**graded, LONGER: 0.5}))[LONGER]
    assert (refused.kind, refused.rejected.score, refused.rejected.case.name) == (
        "refused",
        0.5,
        "no think block",
    )
    # The bar is the best correct form's score, and named as such, not as the reference's.
    boxed_only = verdicts_by_case(write_reward(tmp_path, {LONGER: 1.0, "empty answer": 1.0}))
    assert boxed_only[REFERENCE].kind == "refused" and boxed_only["empty answer"].bar.case.name == LONGER


def test_each_line_names_the_score_it_was_judged_against_and_whose(tmp_path, capsys):
    spec = write_reward(tmp_path, {LONGER: 1.0, "empty answer": 1.0, "no think block": 0.5})
    assert main(["rewards", "check", spec, "--checks", "format"]) == 1
    out = capsys.readouterr().out
    assert (
        f"HOLE: row 0 (prompt 'What is 6 * 7?'), empty answer: scored 1.0, not below 1.0, the score of the "
        f"row's best correct form ('{LONGER}')"
    ) in out
    assert (
        f"REFUSED: row 0 (prompt 'What is 6 * 7?'), {REFERENCE}: scored 0.0, no higher than 0.5, the score "
        f"of 'no think block', which it should reject (the row's best correct form, '{LONGER}', scored 1.0)"
    ) in out
    assert out.rstrip().endswith(
        "1 hole(s), 0 reference(s) without a score, 1 other correct form(s) refused: "
        "do not train with this reward until its holes are closed"
    )


def test_refusals_alone_pass_the_check_and_say_so(capsys):
    assert main(["rewards", "check", "exact_answer"]) == 0  # it wants the bare answer, not a boxed one
    out = capsys.readouterr().out
    assert "REFUSED: row 0 (prompt 'What is 6 * 7?'), boxed, in a sentence: scored 0.0, no higher than" in out
    assert out.rstrip().endswith(
        "0 hole(s), 0 reference(s) without a score, 3 other correct form(s) refused: reported only; "
        "a strict reward may refuse forms its contract does not allow"
    )
    assert "do not train" not in out


def test_a_trl_reward_paying_full_marks_to_correct_forms_refuses_none(capsys):
    """The walkthrough's case: think_format_reward pays 1 to both correct forms and to two hacks."""
    assert main(["rewards", "check", "trl.rewards:think_format_reward"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" not in out and "against the reference's" not in out
    assert "2 hole(s), 0 reference(s) without a score, 0 other correct form(s) refused" in out


def test_a_reward_failing_the_same_way_on_every_case_is_told_once_with_the_reason_for_its_shape(
    tmp_path, capsys
):
    reward = tmp_path / "my_rewards.py"  # open-r1's shape, unannotated: it wants messages
    reward.write_text(
        "def accuracy_reward(completions, solution, **kwargs):\n"
        "    contents = [completion[0]['content'][-1:] for completion in completions]\n"
        "    return [float(c == s) for c, s in zip(contents, solution)]\n"
    )
    data = tmp_path / "rl.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"{n} + 0?", "solution": str(n)}) + "\n" for n in (4, 6, 2))
    )
    assert main(["rewards", "check", f"{reward}:accuracy_reward", "--data", str(data)]) == 1
    out = capsys.readouterr().out
    assert "completions given as text (the prompts are strings)" in out
    failed = [line for line in out.splitlines() if "TypeError" in line]
    assert failed == [
        "FAILED on 96 of 102 completions: all but the 'empty' one(s): the reward raised TypeError: string "
        "indices must be integers, not 'str' (it was given text completions: the prompts are strings; "
        "a reward written for conversational ones needs `completions: conversational` on it in the recipe, "
        "or --completions conversational)"
    ]
    assert "FAILED on 6 of 102 completions: 'empty', in every row: the reward raised IndexError" in out
    assert "set on the reward" not in out and "REFUSED:" not in out
    assert "6 reference(s) without a score" in out and "until every reference gets a score" in out


def test_a_decided_shape_keeps_its_reason_across_processes():
    decided = pickle.loads(pickle.dumps(DecidedShape("text", "the prompts are strings")))
    assert (decided, decided.reason) == ("text", "the prompts are strings")

    def conversational(completions, **kwargs):
        return [c[0]["content"] for c in completions]

    with pytest.raises(TypeError) as raised:
        call_reward(conversational, ["q"], ["a"], {}, shape=decided)
    assert "(it was given text completions: the prompts are strings;" in describe_error(raised.value)
    with pytest.raises(TypeError) as raised:
        call_reward(conversational, ["q"], ["a"], {}, shape="text")
    assert "(it was given text completions: set on the reward;" in describe_error(raised.value)
