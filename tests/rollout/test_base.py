import doctest

import reasonkit.rollout.base as base


def test_doctests():
    assert doctest.testmod(base).failed == 0
