"""Puzzles as token tensors for the TRM stage, and the stream of examples each batch slot trains on.

Glossary: N puzzles, L cells, B batch slots (over all processes).

A *slot* holds one example through its supervision steps; when the example halts, the slot takes the
next one of its own stream. Slot i's k-th example is the global draw g = k*B + i of an epoch-wise
shuffled order, and its augmentation and halting exploration are drawn from a generator seeded with g.
So what a slot sees depends on neither which process holds it nor how many processes there are, and
(with each slot's count) it is the whole data position a checkpoint needs.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

import torch

from reasonkit import hub
from reasonkit.errors import ReasonkitError
from reasonkit.tasks import mazes, sudoku
from reasonkit.trm.schema import SudokuSettings, TRMTask


class PuzzleDataError(ReasonkitError, ValueError):
    pass


@dataclass
class PuzzleSet:
    inputs: torch.Tensor  # [N, L] cell tokens of the puzzles
    labels: torch.Tensor  # [N, L] the solutions

    def __len__(self) -> int:
        return len(self.inputs)


class PuzzleKind:
    """What the trainer needs to know about a task: tokens, augmentation, label-free validity."""

    def __init__(self, task: TRMTask):
        self.name = task.name
        if task.name == "sudoku":
            self.shape = sudoku.shape_of(task.sudoku.size)
            self.seq_len, self.vocab_size = self.shape.cells, self.shape.size + 1  # 0 blank, 1..size
        else:
            self.side = task.maze.side
            self.seq_len, self.vocab_size = self.side * self.side, mazes.VOCAB_SIZE

    def augment(self, puzzle: tuple, label: tuple, rng: random.Random) -> tuple[tuple, tuple]:
        if self.name == "sudoku":
            symmetry = sudoku.random_symmetry(self.shape, rng)
            return sudoku.transform(puzzle, symmetry), sudoku.transform(label, symmetry)
        element = rng.randrange(8)
        return mazes.dihedral(puzzle, self.side, element), mazes.dihedral(label, self.side, element)

    def is_valid(self, puzzle: tuple, answer: tuple) -> bool:
        if self.name == "sudoku":
            return sudoku.is_valid_answer(puzzle, answer, self.shape)
        return mazes.is_valid_answer(puzzle, answer, self.side)

    def to_fill(self, inputs: torch.Tensor) -> torch.Tensor:
        """[N, L] bool: the cells the model has to work out (Sudoku blanks; a maze's open cells)."""
        if self.name == "sudoku":
            return inputs == 0
        return inputs == mazes.OPEN


def to_tensors(pairs: list[tuple[tuple, tuple]]) -> PuzzleSet:
    return PuzzleSet(
        torch.tensor([p for p, _ in pairs], dtype=torch.long),
        torch.tensor([s for _, s in pairs], dtype=torch.long),
    )


_CACHE: dict[str, dict[str, PuzzleSet]] = {}


def puzzle_splits(task: TRMTask) -> dict[str, PuzzleSet]:
    """``train``, ``test`` and (when asked for) ``harder``; generated sets are made once per process
    (stages of a recipe that share a task share its puzzles). Held-out puzzles are generated first and
    training ones must differ from all of them under the symmetries."""
    key = json.dumps(asdict(task), sort_keys=True)
    if key not in _CACHE:
        try:
            _CACHE[key] = _make_splits(task)
        except ValueError as exc:
            raise PuzzleDataError(f"task {task.name}: {exc}") from None
    return _CACHE[key]


def _make_splits(task: TRMTask) -> dict[str, PuzzleSet]:
    rng = random.Random(task.seed)
    if task.name == "maze":
        side = task.maze.side
        test = mazes.generate(side, task.test_size, rng)
        train = mazes.generate(
            side, task.train_size, rng, exclude={mazes.symmetry_key(m, side) for m, _ in test}
        )
        return {"train": to_tensors(train), "test": to_tensors(test)}
    shape = sudoku.shape_of(task.sudoku.size)
    splits: dict[str, list] = {}
    held_out: set = set()
    if task.test_file:
        splits["test"] = read_puzzle_file(task.test_file, shape)
    else:
        splits["test"] = sudoku.generate(shape, task.test_size, rng, _hardness(task.sudoku))
    held_out |= {sudoku.symmetry_key(p, shape) for p, _ in splits["test"]}
    if task.harder:
        splits["harder"] = sudoku.generate(
            shape, task.harder_size, rng, _hardness(task.harder), exclude=held_out
        )
        held_out |= {sudoku.symmetry_key(p, shape) for p, _ in splits["harder"]}
    if task.train_file:
        # A file's training puzzles are used as they are (Sudoku-Extreme's splits are disjoint by
        # construction); a generated set is kept apart from the held-out puzzles here.
        splits["train"] = read_puzzle_file(task.train_file, shape)
    else:
        splits["train"] = sudoku.generate(
            shape, task.train_size, rng, _hardness(task.sudoku), exclude=held_out
        )
    return {name: to_tensors(pairs) for name, pairs in splits.items()}


def _hardness(settings: SudokuSettings) -> sudoku.Hardness:
    return sudoku.Hardness(settings.min_clues, settings.max_clues, settings.min_guesses, settings.max_guesses)


def read_puzzle_file(source, shape: sudoku.Shape) -> list:
    """The puzzles of a ``PuzzleFile`` (local file or hub id), Sudoku-Extreme shaped."""
    with hub.reading(source.path, "puzzle file"):
        return sudoku.read_puzzle_rows(
            source.path, shape, source.split, source.puzzle_column, source.solution_column, source.max_rows
        )


class SlotFeed:
    """Examples for global slots ``slots`` (this process's share) out of ``batch_size`` slots in all."""

    def __init__(
        self, data: PuzzleSet, kind: PuzzleKind, batch_size: int, slots: range, seed: int, augment: bool
    ):
        self.data, self.kind, self.batch_size, self.slots = data, kind, batch_size, slots
        self.seed, self.augment = seed, augment
        self._orders: dict[int, torch.Tensor] = {}

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._orders[epoch] = torch.randperm(len(self.data), generator=generator)
        return self._orders[epoch]

    def example(
        self, slot: int, count: int, max_steps: int, exploration: float
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Slot ``slot``'s ``count``-th example: (puzzle [L], label [L], the fewest supervision steps it
        must take before it may halt)."""
        draw = count * self.batch_size + slot
        epoch, position = divmod(draw, len(self.data))
        index = int(self._order(epoch)[position])
        rng = random.Random(self.seed * 1_000_003 + draw)
        puzzle, label = self.data.inputs[index], self.data.labels[index]
        if self.augment:
            p, s = self.kind.augment(tuple(puzzle.tolist()), tuple(label.tolist()), rng)
            puzzle, label = torch.tensor(p), torch.tensor(s)
        # Exploration (as the reference's ACT): sometimes an example must run a random number of steps
        # before the Q head may stop it, so the head also sees later steps' answers.
        min_steps = rng.randint(2, max_steps) if max_steps >= 2 and rng.random() < exploration else 1
        return puzzle, label, min_steps
