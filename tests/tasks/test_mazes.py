import random

from reasonkit.tasks import mazes
from reasonkit.tasks.mazes import GOAL, OPEN, PATH, START, WALL, dihedral, is_valid_answer, make_maze


def test_label_is_the_shortest_path_and_checks_valid():
    rng = random.Random(0)
    for side in (5, 9, 15):
        maze, label = make_maze(side, rng)
        assert maze.count(START) == 1 and maze.count(GOAL) == 1
        route = mazes.shortest_path(maze, side, maze.index(START), maze.index(GOAL))
        assert label.count(PATH) == len(route) - 2 >= side - 1
        assert is_valid_answer(maze, label, side)
        assert not is_valid_answer(maze, maze, side)  # no route drawn


def test_checker_rejects_broken_routes():
    maze, label = make_maze(11, random.Random(1))
    path_cells = [i for i, v in enumerate(label) if v == PATH]
    gap = list(label)
    gap[path_cells[len(path_cells) // 2]] = OPEN
    assert not is_valid_answer(maze, tuple(gap), 11)
    extra = list(label)
    spare = next(i for i, v in enumerate(label) if v == OPEN)
    extra[spare] = PATH  # a dead-end branch or a detached cell: not one route
    assert not is_valid_answer(maze, tuple(extra), 11)
    through_wall = list(label)
    through_wall[next(i for i, v in enumerate(maze) if v == WALL)] = PATH
    assert not is_valid_answer(maze, tuple(through_wall), 11)


def test_dihedral_group_keeps_mazes_solved_and_keys_alike():
    maze, label = make_maze(9, random.Random(2))
    images = {dihedral(maze, 9, e) for e in range(8)}
    assert len(images) == 8  # a random maze has no symmetry of its own
    for e in range(8):
        assert is_valid_answer(dihedral(maze, 9, e), dihedral(label, 9, e), 9)
        assert mazes.symmetry_key(dihedral(maze, 9, e), 9) == mazes.symmetry_key(maze, 9)


def test_generate_keeps_sets_apart():
    rng = random.Random(0)
    test = mazes.generate(7, 20, rng)
    keys = {mazes.symmetry_key(m, 7) for m, _ in test}
    train = mazes.generate(7, 50, rng, exclude=keys)
    assert not keys & {mazes.symmetry_key(m, 7) for m, _ in train}
