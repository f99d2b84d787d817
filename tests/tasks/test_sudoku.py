import random

import pytest

from reasonkit.tasks import sudoku
from reasonkit.tasks.sudoku import SHAPES, Hardness, generate, is_valid_answer, solve, symmetry_key


def removable(puzzle, shape) -> list[int]:
    """Clues whose removal keeps the solution unique (none for a minimal puzzle)."""
    out = []
    for cell, value in enumerate(puzzle):
        if value:
            trial = list(puzzle)
            trial[cell] = 0
            if len(solve(tuple(trial), shape)[0]) == 1:
                out.append(cell)
    return out


@pytest.mark.parametrize("size, count", [(4, 5), (6, 20), (9, 2)])
def test_generated_puzzles_have_one_solution_and_are_minimal(size, count):
    shape = SHAPES[size]
    for puzzle, solution in generate(shape, count, random.Random(size)):
        solutions, _ = solve(puzzle, shape, limit=3)
        assert solutions == [solution]
        assert is_valid_answer(puzzle, solution, shape)
        assert removable(puzzle, shape) == []  # min_clues 0: no clue can go


def test_min_clues_stops_removal_and_max_clues_filters():
    shape = SHAPES[6]
    rng = random.Random(0)
    easy = generate(shape, 10, rng, Hardness(min_clues=14))
    assert all(sum(v != 0 for v in p) == 14 for p, _ in easy)
    hard = generate(shape, 10, rng, Hardness(max_clues=9))
    assert all(sum(v != 0 for v in p) <= 9 for p, _ in hard)
    assert all(len(solve(p, shape)[0]) == 1 for p, _ in easy + hard)


def test_hardness_by_search():
    shape = SHAPES[9]
    rng = random.Random(3)
    ((puzzle, _),) = generate(shape, 1, rng, Hardness(min_guesses=1))
    assert sudoku.search_needed(puzzle, shape) >= 1
    ((easy, _),) = generate(shape, 1, rng, Hardness(min_clues=40, max_guesses=0))
    assert sudoku.search_needed(easy, shape) == 0


@pytest.mark.parametrize("size", [4, 6, 9])
def test_symmetries_keep_puzzles_valid_unique_and_keyed_alike(size):
    shape = SHAPES[size]
    rng = random.Random(size)
    ((puzzle, solution),) = generate(shape, 1, rng)
    transposed = 0
    for _ in range(20):
        symmetry = sudoku.random_symmetry(shape, rng)
        p, s = sudoku.transform(puzzle, symmetry), sudoku.transform(solution, symmetry)
        assert is_valid_answer(p, s, shape)
        assert solve(p, shape, limit=2)[0] == [s]
        assert symmetry_key(p, shape) == symmetry_key(puzzle, shape)
        assert sorted(p) != sorted(puzzle) or p != puzzle or True
        rows_of = [c // size for c in symmetry.cell_source[:size]]
        transposed += len(set(rows_of)) == size  # row 0 read down a column: a transpose
    # 2x3 boxes have no transpose; square boxes take one about half the time
    assert (transposed == 0) if size == 6 else (0 < transposed < 20)


def test_symmetry_key_tells_different_puzzles_apart():
    shape = SHAPES[6]
    puzzles = [p for p, _ in generate(shape, 30, random.Random(1))]
    assert len({symmetry_key(p, shape) for p in puzzles}) == 30


def test_four_by_four_runs_out_of_distinct_puzzles():
    with pytest.raises(ValueError, match="distinct up to symmetry"):
        generate(SHAPES[4], 200, random.Random(0), max_tries=400)


def test_checker_rejects_broken_answers():
    shape = SHAPES[4]
    puzzle = (1, 0, 0, 4, 0, 4, 1, 0, 0, 1, 0, 0, 4, 0, 2, 1)
    good = (1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1)
    assert is_valid_answer(puzzle, good, shape)
    assert not is_valid_answer(puzzle, good[:-1] + (0,), shape)  # a blank left
    swapped = (2, 1, 3, 4, 3, 4, 2, 1, 1, 2, 4, 3, 4, 3, 1, 2)  # a solved grid, but not this puzzle's
    assert sudoku.is_solved_grid(swapped, shape) and not is_valid_answer(puzzle, swapped, shape)


def test_reads_sudoku_extreme_shaped_files(tmp_path):
    shape = SHAPES[9]
    pairs = generate(shape, 3, random.Random(0))
    text = lambda grid, blank: "".join(str(v) if v else blank for v in grid)  # noqa: E731
    csv = tmp_path / "train.csv"
    csv.write_text(
        "source,question,answer,rating\n"
        + "".join(f"gen,{text(p, '.')},{text(s, '.')},0\n" for p, s in pairs[:2])
        + f"gen,{text(pairs[2][0], '0')},{text(pairs[2][1], '0')},0\n"
    )
    assert sudoku.read_puzzle_rows(str(csv), shape) == pairs
    assert sudoku.read_puzzle_rows(str(csv), shape, max_rows=1) == pairs[:1]
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text(f'{{"puzzle": "{text(pairs[0][0], ".")}", "solution": "{text(pairs[1][1], ".")}"}}\n')
    with pytest.raises(ValueError, match="row 0: the solution does not solve"):
        sudoku.read_puzzle_rows(str(jsonl), shape)
