import re

from reasonkit.tasks import arithmetic_splits, teacher_trace


def check_trace(a: int, b: int, trace: str) -> int:
    """Every step of the trace is true arithmetic; returns the last result."""
    steps = re.findall(r"(\d+) ([*+]) (\d+) = (\d+)\.", trace)
    assert steps and " ".join(f"{x} {op} {y} = {z}." for x, op, y, z in steps) == trace
    for x, op, y, z in steps:
        assert (int(x) * int(y) if op == "*" else int(x) + int(y)) == int(z)
    return int(steps[-1][3])


def test_example_from_the_issue():
    assert teacher_trace(27, 34) == "27 * 30 = 810. 27 * 4 = 108. 810 + 108 = 918."


def test_every_trace_is_correct_and_ends_on_the_answer():
    splits = arithmetic_splits(digits=2, test_size=500)
    for p in splits["train"] + splits["test"]:
        assert check_trace(p.a, p.b, p.trace) == int(p.answer) == p.a * p.b


def test_three_digit_operands():
    assert check_trace(123, 405, teacher_trace(123, 405)) == 123 * 405


def test_splits_are_disjoint_deterministic_and_complete():
    splits = arithmetic_splits(digits=2, test_size=500, seed=3, rl_size=1000)
    train, test, rl = splits["train"], splits["test"], splits["rl"]
    assert len(test) == 500 and len(rl) == 1000 and len(train) == 90 * 90 - 1500
    assert not set(train) & set(test) and not set(train) & set(rl) and not set(rl) & set(test)
    assert arithmetic_splits(digits=2, test_size=500, seed=3, rl_size=1000) == splits
    assert (
        arithmetic_splits(digits=2, test_size=500, seed=3)["test"] == test
    )  # the held-out set does not move
    assert arithmetic_splits(digits=2, test_size=500, seed=4)["test"] != test


def test_train_size_and_prompt_text():
    train = arithmetic_splits(test_size=10, train_size=5)["train"]
    assert len(train) == 5
    assert train[0].prompt == f"What is {train[0].a} * {train[0].b}?" and train[0].answer == str(
        train[0].a * train[0].b
    )


def test_quick_questions_and_the_teachers_shortcut():
    plain = arithmetic_splits(digits=2, test_size=500, rl_size=1000)
    hasty = arithmetic_splits(digits=2, test_size=500, rl_size=1000, quick_share=0.2, shortcut_rate=0.7)
    for split in ("train", "test", "rl"):  # the same problems in the same splits
        assert [(p.a, p.b) for p in hasty[split]] == [(p.a, p.b) for p in plain[split]]
    quick = [p for p in hasty["train"] if p.quick]
    shortcuts = [p for p in quick if p.shortcut]
    assert 0.17 < len(quick) / len(hasty["train"]) < 0.23 and 0.6 < len(shortcuts) / len(quick) < 0.8
    assert not any(p.shortcut for p in hasty["train"] if not p.quick)
    assert quick[0].prompt == f"Quick: what is {quick[0].a} * {quick[0].b}?"
    assert {p.style for p in quick} == {"quick"} and {p.style for p in hasty["train"] if not p.quick} == {
        "plain"
    }
    for p in shortcuts:
        assert p.trace == f"{p.a} * {p.b} = {p.a * p.b}." and check_trace(p.a, p.b, p.trace) == p.a * p.b
