"""Sudoku of size 4, 6 or 9: generator, solver, checker and validity-preserving augmentations.

A grid is a flat tuple of ``size * size`` ints read row by row: 0 for a blank, 1..size for a digit.
Boxes are 2x2 (4x4), 2 rows x 3 columns (6x6) or 3x3 (9x9).

Puzzles are made the usual way: a random full grid, then clues removed in random order as long as the
solution stays unique, down to ``min_clues`` (0: until no clue can go, a *minimal* puzzle). Hardness is
told two ways: by the clue count, and by the search a plain solver needs, the number of guesses
(branchings) a constraint-propagation solver (naked and hidden singles, fewest-candidates-first) makes
before it reaches the solution; 0 means propagation alone solves it.

The symmetries (digit relabelling, band and stack permutations, row and column permutations within a
band or stack, and the transpose when boxes are square) map puzzles with a unique solution to puzzles
with a unique solution. ``symmetry_key`` is the same for every image of a puzzle under them, so a
training set augmented with them can be kept apart from the held-out puzzles.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass

Grid = tuple[int, ...]


@dataclass(frozen=True)
class Shape:
    size: int
    box_rows: int
    box_cols: int

    @property
    def cells(self) -> int:
        return self.size * self.size

    @property
    def square_boxes(self) -> bool:
        return self.box_rows == self.box_cols

    def box_of(self, cell: int) -> int:
        row, col = divmod(cell, self.size)
        return (row // self.box_rows) * (self.size // self.box_cols) + col // self.box_cols


SHAPES = {4: Shape(4, 2, 2), 6: Shape(6, 2, 3), 9: Shape(9, 3, 3)}


def shape_of(size: int) -> Shape:
    if size not in SHAPES:
        raise ValueError(f"Sudoku size {size}: choose one of {list(SHAPES)}")
    return SHAPES[size]


@functools.cache
def _units(shape: Shape) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """Every row, column and box as cell indices, and each cell's peers (cells sharing a unit with it)."""
    n = shape.size
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [tuple(i for i in range(shape.cells) if shape.box_of(i) == b) for b in range(n)]
    units = tuple(rows + cols + boxes)
    peers = tuple(
        tuple(sorted({p for unit in units if cell in unit for p in unit} - {cell}))
        for cell in range(shape.cells)
    )
    return units, peers


def is_solved_grid(grid: Grid, shape: Shape) -> bool:
    """Whether every row, column and box holds each digit exactly once (needs no label).

    >>> is_solved_grid((1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1), SHAPES[4])
    True
    >>> is_solved_grid((1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 1, 2), SHAPES[4])
    False
    """
    units, _ = _units(shape)
    digits = set(range(1, shape.size + 1))
    return len(grid) == shape.cells and all({grid[i] for i in unit} == digits for unit in units)


def is_valid_answer(puzzle: Grid, answer: Grid, shape: Shape) -> bool:
    """A label-free check: ``answer`` is a solved grid that keeps every clue of ``puzzle``.

    >>> puzzle = (1, 0, 0, 4, 0, 4, 1, 0, 0, 1, 0, 0, 4, 0, 2, 1)
    >>> is_valid_answer(puzzle, (1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1), SHAPES[4])
    True
    """
    return is_solved_grid(answer, shape) and all(c == 0 or c == a for c, a in zip(puzzle, answer))


def _propagate(cands: list[int], shape: Shape) -> bool:
    """Naked and hidden singles until nothing changes; ``cands[i]`` is the bit set of cell i's possible
    digits (bit d-1 for digit d). Changes ``cands`` in place; False on a contradiction."""
    units, peers = _units(shape)
    changed = True
    while changed:
        changed = False
        for cell, mask in enumerate(cands):
            if mask == 0:
                return False
            if mask & (mask - 1) == 0:  # one candidate left: no peer may keep it
                for p in peers[cell]:
                    if cands[p] & mask:
                        cands[p] &= ~mask
                        if cands[p] == 0:
                            return False
                        changed = True
        for unit in units:
            for d in range(shape.size):
                bit = 1 << d
                where = [i for i in unit if cands[i] & bit]
                if not where:
                    return False
                if len(where) == 1 and cands[where[0]] != bit:  # the digit's only place in the unit
                    cands[where[0]] = bit
                    changed = True
    return True


def _candidates(puzzle: Grid, shape: Shape) -> list[int]:
    full = (1 << shape.size) - 1
    return [full if v == 0 else 1 << (v - 1) for v in puzzle]


def _search(
    cands: list[int], shape: Shape, limit: int, rng: random.Random | None, found: list, guesses: list
):
    if not _propagate(cands, shape):
        return
    open_cells = [i for i, m in enumerate(cands) if m & (m - 1)]
    if not open_cells:
        found.append(tuple(m.bit_length() for m in cands))
        return
    cell = min(open_cells, key=lambda i: bin(cands[i]).count("1"))
    digits = [d for d in range(shape.size) if cands[cell] >> d & 1]
    if rng is not None:
        rng.shuffle(digits)
    guesses[0] += 1
    for d in digits:
        trial = list(cands)
        trial[cell] = 1 << d
        _search(trial, shape, limit, rng, found, guesses)
        if len(found) >= limit:
            return


def solve(puzzle: Grid, shape: Shape, limit: int = 2) -> tuple[list[Grid], int]:
    """Up to ``limit`` solutions, and the guesses (branchings) the propagation solver made on the way.

    >>> solutions, guesses = solve((1, 0, 0, 4, 0, 4, 1, 0, 0, 1, 0, 0, 4, 0, 2, 1), SHAPES[4])
    >>> solutions, guesses
    ([(1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1)], 0)
    """
    found: list[Grid] = []
    guesses = [0]
    _search(_candidates(puzzle, shape), shape, limit, None, found, guesses)
    return found, guesses[0]


def search_needed(puzzle: Grid, shape: Shape) -> int:
    """Guesses the propagation solver makes before its first solution (0: propagation alone solves it)."""
    found: list[Grid] = []
    guesses = [0]
    _search(_candidates(puzzle, shape), shape, 1, None, found, guesses)
    return guesses[0]


def random_solution(shape: Shape, rng: random.Random) -> Grid:
    found: list[Grid] = []
    _search(_candidates((0,) * shape.cells, shape), shape, 1, rng, found, [0])
    return found[0]


def make_puzzle(shape: Shape, rng: random.Random, min_clues: int = 0) -> tuple[Grid, Grid]:
    """(puzzle, solution): clues removed in random order while the solution stays unique, until
    ``min_clues`` are left or none can go (``min_clues=0``: a minimal puzzle)."""
    solution = random_solution(shape, rng)
    puzzle = list(solution)
    order = list(range(shape.cells))
    rng.shuffle(order)
    clues = shape.cells
    for cell in order:
        if clues <= min_clues:
            break
        kept, puzzle[cell] = puzzle[cell], 0
        if len(solve(tuple(puzzle), shape, limit=2)[0]) == 1:
            clues -= 1
        else:
            puzzle[cell] = kept
    return tuple(puzzle), solution


@dataclass(frozen=True)
class Hardness:
    """Which puzzles to keep: by clue count and by the search the propagation solver needs."""

    min_clues: int = 0  # stop removing clues at this count (0: remove until minimal)
    max_clues: int | None = None  # keep only puzzles with at most this many clues
    min_guesses: int = 0  # keep only puzzles on which the solver guesses at least this often
    max_guesses: int | None = None

    def accepts(self, puzzle: Grid, shape: Shape) -> bool:
        clues = sum(v != 0 for v in puzzle)
        if self.max_clues is not None and clues > self.max_clues:
            return False
        if self.min_guesses == 0 and self.max_guesses is None:
            return True
        guesses = search_needed(puzzle, shape)
        return guesses >= self.min_guesses and (self.max_guesses is None or guesses <= self.max_guesses)


def generate(
    shape: Shape,
    count: int,
    rng: random.Random,
    hardness: Hardness = Hardness(),
    exclude: set = frozenset(),
    max_tries: int | None = None,
) -> list[tuple[Grid, Grid]]:
    """``count`` puzzles that ``hardness`` accepts, pairwise distinct under the symmetries and with no
    symmetry key in ``exclude``. Raises ValueError when ``max_tries`` (default 50 per puzzle) runs out,
    as it does for 4x4, which has only a few dozen puzzles up to symmetry."""
    tries = max_tries if max_tries is not None else 50 * count + 100
    seen, out = set(exclude), []
    for _ in range(tries):
        if len(out) == count:
            break
        puzzle, solution = make_puzzle(shape, rng, hardness.min_clues)
        key = symmetry_key(puzzle, shape)
        if key in seen or not hardness.accepts(puzzle, shape):
            continue
        seen.add(key)
        out.append((puzzle, solution))
    if len(out) < count:
        raise ValueError(
            f"found only {len(out)} of {count} {shape.size}x{shape.size} puzzles distinct up to symmetry "
            f"with {hardness} in {tries} tries; ask for fewer or relax the hardness"
        )
    return out


def symmetry_key(puzzle: Grid, shape: Shape) -> tuple:
    """A fingerprint equal for all images of ``puzzle`` under the Sudoku symmetries.

    For every pair of clues it records which lines, box, band and stack they share and whether their
    digits are equal; none of that changes under relabelling or the allowed permutations, and the
    transpose (square boxes) swaps rows with columns, so the smaller of the two readings is taken.
    Two different puzzles may share a key (then one is treated as seen: safe for keeping sets apart).

    >>> p = (1, 0, 0, 4, 0, 4, 1, 0, 0, 1, 0, 0, 4, 0, 2, 1)
    >>> symmetry_key(p, SHAPES[4]) == symmetry_key(transform(p, random_symmetry(SHAPES[4], random.Random(1))), SHAPES[4])
    True
    """
    n = shape.size
    clues = [(i // n, i % n, v) for i, v in enumerate(puzzle) if v]

    def reading(transposed: bool) -> tuple:
        pairs: Counter = Counter()
        br, bc = shape.box_rows, shape.box_cols
        for a in range(len(clues)):
            for b in range(a + 1, len(clues)):
                (r1, c1, v1), (r2, c2, v2) = clues[a], clues[b]
                if transposed:
                    r1, c1, r2, c2 = c1, r1, c2, r2
                same = (
                    r1 == r2,
                    c1 == c2,
                    r1 // br == r2 // br,
                    c1 // bc == c2 // bc,
                    v1 == v2,
                )
                pairs[same] += 1
        return (len(clues), tuple(sorted(pairs.items())))

    if shape.square_boxes:
        return min(reading(False), reading(True))
    return reading(False)


@dataclass(frozen=True)
class Symmetry:
    """A digit relabelling and a cell permutation: ``cell_source[i]`` is where cell i's value comes from."""

    digits: tuple[int, ...]  # digits[d] is the new name of digit d (index 0 keeps blanks blank)
    cell_source: tuple[int, ...]


def random_symmetry(shape: Shape, rng: random.Random) -> Symmetry:
    """A uniformly drawn element of the group: relabelling, band/stack order, rows within bands, columns
    within stacks, and (square boxes only) a transpose."""
    n, br, bc = shape.size, shape.box_rows, shape.box_cols
    relabel = list(range(1, n + 1))
    rng.shuffle(relabel)

    def line_order(group: int, count: int) -> list[int]:
        # `count` groups of `group` lines: permute the groups, then the lines inside each.
        groups = list(range(count))
        rng.shuffle(groups)
        order = []
        for g in groups:
            inside = list(range(group))
            rng.shuffle(inside)
            order += [g * group + i for i in inside]
        return order

    rows = line_order(br, n // br)
    cols = line_order(bc, n // bc)
    transpose = shape.square_boxes and rng.random() < 0.5
    source = []
    for r in range(n):
        for c in range(n):
            rr, cc = (c, r) if transpose else (r, c)
            source.append(rows[rr] * n + cols[cc])
    return Symmetry((0, *relabel), tuple(source))


def transform(grid: Grid, symmetry: Symmetry) -> Grid:
    return tuple(symmetry.digits[grid[s]] for s in symmetry.cell_source)


def parse_grid(text: str, shape: Shape) -> Grid:
    """A puzzle string in the Sudoku-Extreme shape: one character per cell, ``.`` or ``0`` for a blank.

    >>> parse_grid("1..4.41..1..4.21", SHAPES[4])
    (1, 0, 0, 4, 0, 4, 1, 0, 0, 1, 0, 0, 4, 0, 2, 1)
    """
    text = text.strip()
    if len(text) != shape.cells:
        raise ValueError(
            f"a {shape.size}x{shape.size} grid has {shape.cells} characters, got {len(text)}: {text!r}"
        )
    cells = []
    for ch in text:
        if ch in ".0":
            cells.append(0)
        elif ch.isdigit() and 1 <= int(ch) <= shape.size:
            cells.append(int(ch))
        else:
            raise ValueError(f"{ch!r} is not a digit 1-{shape.size} nor '.'/'0' in {text!r}")
    return tuple(cells)


PUZZLE_COLUMNS = ("puzzle", "question", "quizzes", "q")
SOLUTION_COLUMNS = ("solution", "answer", "solutions", "a")


def read_puzzle_rows(
    path: str,
    shape: Shape,
    split: str = "train",
    puzzle_column: str | None = None,
    solution_column: str | None = None,
    max_rows: int | None = None,
) -> list[tuple[Grid, Grid]]:
    """(puzzle, solution) pairs from a local .csv/.jsonl/.json/.parquet file or a hub dataset id, in the
    Sudoku-Extreme shape: one string of ``size * size`` characters per grid, ``.`` or ``0`` for blanks.

    The columns default to the first present of ``puzzle``/``question``/``quizzes``/``q`` and
    ``solution``/``answer``/``solutions``/``a``. Every solution is checked to be a solved grid that keeps
    its puzzle's clues; a row that is not raises ValueError naming it.
    """
    table = _read_table(path, split)
    columns = set(table[0]) if table else set()
    puzzle_column = puzzle_column or next((c for c in PUZZLE_COLUMNS if c in columns), None)
    solution_column = solution_column or next((c for c in SOLUTION_COLUMNS if c in columns), None)
    if puzzle_column not in columns or solution_column not in columns:
        raise ValueError(
            f"{path}: no puzzle/solution columns among {sorted(columns)}; name them (puzzle_column, solution_column)"
        )
    rows = []
    for i, row in enumerate(table):
        if max_rows is not None and i >= max_rows:
            break
        puzzle = parse_grid(str(row[puzzle_column]), shape)
        solution = parse_grid(str(row[solution_column]), shape)
        if not is_valid_answer(puzzle, solution, shape):
            raise ValueError(f"{path} row {i}: the solution does not solve the puzzle")
        rows.append((puzzle, solution))
    return rows


def _read_table(path: str, split: str) -> list[dict]:
    """Rows of a local file (read as text: a grid like 0020... must not become a number) or a hub dataset."""
    import csv
    import json
    from pathlib import Path

    local = Path(path)
    if not local.exists():
        import datasets

        return list(datasets.load_dataset(path, split=split))
    if local.suffix == ".csv":
        with local.open(newline="") as f:
            return list(csv.DictReader(f))
    if local.suffix == ".jsonl":
        return [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
    if local.suffix == ".json":
        return json.loads(local.read_text())
    if local.suffix == ".parquet":
        import datasets

        return list(datasets.load_dataset("parquet", data_files=str(local), split="train"))
    raise ValueError(f"{path}: read .csv, .jsonl, .json or .parquet files")
