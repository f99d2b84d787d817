import json

import pytest

from rewards import get
from rewards.sandbox import isolation

pytestmark = pytest.mark.skipif(
    isolation() != "namespaces", reason="code rewards are tested in the full sandbox"
)

TESTS = [
    {"input": "2 3\n", "output": "5\n"},
    {"input": "10 20\n", "output": "30\n"},
    {"input": "1 1\n", "output": "2"},
]
SOLUTION = "a, b = map(int, input().split())\nprint(a + b)\n"


def answer(program: str, lang="python") -> str:
    return f"<think>Add the two numbers.</think>Here is the program:\n```{lang}\n{program}```"


def score(completion, tests=TESTS, name="code"):
    return get(name)(["Add two numbers."], [completion], tests=[tests])[0]


def test_correct_program_passes_every_test():
    assert score(answer(SOLUTION)) == 1.0
    assert score(answer(SOLUTION, lang="")) == 1.0
    assert score(answer(SOLUTION), tests=json.dumps(TESTS)) == 1.0  # tests stored as JSON text


def test_trailing_whitespace_is_normalised():
    assert score(answer("a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()\nprint()\n")) == 1.0


@pytest.mark.parametrize(
    "completion, expected",
    [
        (answer("print(5)\n"), 1 / 3),  # prints the first test's expected output only
        (answer(SOLUTION + "print('debug')\n"), 0.0),  # extra line
        (
            answer("a, b = map(int, input().split())\nprint(a + b, end='')\nprint(0)\n"),
            0.0,
        ),  # output plus junk
        (
            f"<think>```python\n{SOLUTION}```</think>The answer is above.",
            0.0,
        ),  # code only inside the think block
        ("<think>unclosed ```python\n" + SOLUTION + "```", 0.0),
        ("", 0.0),
        (answer("while True: pass\n"), 0.0),  # hangs: killed, scored 0
        (answer("import sys; sys.exit(0)\n"), 0.0),
        (answer("print(" + "'x' * 10**9" + ")\n"), 0.0),  # huge output
    ],
)
def test_adversarial_completions(completion, expected):
    assert score(completion) == pytest.approx(expected)


def test_last_block_after_the_think_block_is_the_one_run():
    completion = answer("print('wrong')\n") + f"\nFixed:\n```python\n{SOLUTION}```"
    assert score(completion) == 1.0


def test_all_or_nothing_and_rows_without_tests():
    assert score(answer("print(5)\n"), name="code_all") == 0.0
    assert score(answer(SOLUTION), name="code_all") == 1.0
    assert score(answer(SOLUTION), tests=[]) is None
    assert score(answer(SOLUTION), tests=None) is None
    assert score(answer(SOLUTION), tests="[{'input': broken json") is None
    assert score(answer(SOLUTION), tests='{"input": "1", "output": "1"}') is None  # not a list
