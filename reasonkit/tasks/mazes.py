"""Square mazes: generator, shortest-path label, label-free checker, and the dihedral augmentations.

A maze is a flat tuple of ``side * side`` tokens read row by row (``side`` odd): WALL, OPEN, START, GOAL.
Rooms sit at odd coordinates and a randomised depth-first search knocks walls between them, so the maze
is *perfect* (one route between any two rooms) and the shortest path from START to GOAL is unique; the
label is the maze with that path's cells (START and GOAL excluded) marked PATH. The eight rotations and
reflections of the square keep a maze a maze and its shortest path the shortest path.
"""

from __future__ import annotations

import random
from collections import deque

Maze = tuple[int, ...]
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
VOCAB_SIZE = 6  # 0 is left unused (padding)


def make_maze(side: int, rng: random.Random, min_distance: int | None = None) -> tuple[Maze, Maze]:
    """(maze, labelled maze) on a ``side x side`` grid with START and GOAL at least ``min_distance`` steps
    apart along the path (default: side, so the route crosses a good part of the maze)."""
    if side < 5 or side % 2 == 0:
        raise ValueError(f"maze side {side}: use an odd number >= 5 (rooms sit at odd coordinates)")
    grid = [WALL] * (side * side)
    rooms = [(r, c) for r in range(1, side, 2) for c in range(1, side, 2)]
    start_room = rng.choice(rooms)
    grid[start_room[0] * side + start_room[1]] = OPEN
    stack, seen = [start_room], {start_room}
    while stack:
        r, c = stack[-1]
        nexts = [(r + dr, c + dc) for dr, dc in ((2, 0), (-2, 0), (0, 2), (0, -2))]
        nexts = [(nr, nc) for nr, nc in nexts if 0 < nr < side and 0 < nc < side and (nr, nc) not in seen]
        if not nexts:
            stack.pop()
            continue
        nr, nc = rng.choice(nexts)
        grid[((r + nr) // 2) * side + (c + nc) // 2] = OPEN
        grid[nr * side + nc] = OPEN
        seen.add((nr, nc))
        stack.append((nr, nc))
    want = side if min_distance is None else min_distance
    for _ in range(1000):
        a, b = rng.sample(rooms, 2)
        path = shortest_path(tuple(grid), side, a[0] * side + a[1], b[0] * side + b[1])
        if len(path) - 1 >= want:
            break
    grid[path[0]], grid[path[-1]] = START, GOAL
    label = list(grid)
    for cell in path[1:-1]:
        label[cell] = PATH
    return tuple(grid), tuple(label)


def shortest_path(maze: Maze, side: int, source: int, target: int) -> list[int]:
    """Cells of a shortest route from ``source`` to ``target`` (both included), by breadth-first search
    through non-wall cells; [] when there is none."""
    previous = {source: source}
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        if cell == target:
            path = [cell]
            while cell != source:
                cell = previous[cell]
                path.append(cell)
            return path[::-1]
        for n in _neighbours(cell, side):
            if maze[n] != WALL and n not in previous:
                previous[n] = cell
                queue.append(n)
    return []


def _neighbours(cell: int, side: int) -> list[int]:
    r, c = divmod(cell, side)
    return [
        nr * side + nc
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1))
        if 0 <= nr < side and 0 <= nc < side
    ]


def is_valid_answer(maze: Maze, answer: Maze, side: int) -> bool:
    """A label-free check: ``answer`` keeps the maze's walls, START and GOAL, and its PATH cells form one
    route from START to GOAL as short as any.

    >>> maze = (1, 1, 1, 1, 1,  1, 3, 2, 2, 1,  1, 1, 1, 2, 1,  1, 4, 2, 2, 1,  1, 1, 1, 1, 1)
    >>> answer = (1, 1, 1, 1, 1,  1, 3, 5, 5, 1,  1, 1, 1, 5, 1,  1, 4, 5, 5, 1,  1, 1, 1, 1, 1)
    >>> is_valid_answer(maze, answer, 5), is_valid_answer(maze, maze, 5)
    (True, False)
    """
    if len(answer) != len(maze):
        return False
    for m, a in zip(maze, answer):
        if (m in (WALL, START, GOAL) or a in (WALL, START, GOAL)) and m != a:
            return False
        if a not in (OPEN, PATH, WALL, START, GOAL):
            return False
    start, goal = maze.index(START), maze.index(GOAL)
    on_route = {i for i, a in enumerate(answer) if a == PATH} | {start, goal}
    # Walk from START along PATH cells: a simple route has exactly one way on at each step.
    walked, previous, cell = 1, None, start
    while cell != goal:
        ahead = [n for n in _neighbours(cell, side) if n in on_route and n != previous]
        if len(ahead) != 1:
            return False
        previous, cell = cell, ahead[0]
        walked += 1
    return walked == len(on_route) and walked == len(shortest_path(maze, side, start, goal))


def dihedral(maze: Maze, side: int, element: int) -> Maze:
    """One of the square's 8 symmetries (``element`` 0..7: rotation by element % 4 quarter turns, then a
    mirror when element >= 4).

    >>> dihedral((1, 2, 3, 4), 2, 1), dihedral((1, 2, 3, 4), 2, 4)
    ((3, 1, 4, 2), (2, 1, 4, 3))
    """
    out = list(maze)
    for r in range(side):
        for c in range(side):
            rr, cc = r, c
            for _ in range(element % 4):  # a quarter turn clockwise reads row r from column r, bottom up
                rr, cc = side - 1 - cc, rr
            if element >= 4:
                cc = side - 1 - cc
            out[r * side + c] = maze[rr * side + cc]
    return tuple(out)


def symmetry_key(maze: Maze, side: int) -> Maze:
    """The same for all 8 images of a maze: the smallest of them."""
    return min(dihedral(maze, side, e) for e in range(8))


def generate(
    side: int, count: int, rng: random.Random, exclude: set = frozenset()
) -> list[tuple[Maze, Maze]]:
    """``count`` mazes distinct up to the dihedral group, none whose key is in ``exclude``."""
    seen, out = set(exclude), []
    for _ in range(50 * count + 100):
        if len(out) == count:
            return out
        maze, label = make_maze(side, rng)
        key = symmetry_key(maze, side)
        if key not in seen:
            seen.add(key)
            out.append((maze, label))
    if len(out) < count:
        raise ValueError(f"found only {len(out)} of {count} distinct {side}x{side} mazes")
    return out
