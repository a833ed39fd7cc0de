"""Pareto maths (darts/strategies/discrete/pareto.py) against hand-computed fronts, ranks, crowding distances and
hypervolumes, and the properties of a front on random points."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from darts.strategies.discrete.pareto import crowding, dominates, hypervolume, non_dominated, ranks

STAIRS = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]  # a front of three points, every objective minimised


def test_dominance_is_no_worse_everywhere_and_better_somewhere():
    """(1, 2) dominates (1, 3) and (2, 3); equal points and a trade-off do not dominate."""
    assert dominates((1, 2), (1, 3)) and dominates((1, 2), (2, 3))
    assert not dominates((1, 2), (1, 2)) and not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))


def test_front_keeps_the_first_of_equal_points_and_drops_dominated_ones():
    """The front of (2,2), (1,3), (2,2), (3,3), (0,5) is indices 0, 1, 4: the repeat and (3,3) are left out."""
    assert non_dominated([(2, 2), (1, 3), (2, 2), (3, 3), (0, 5)]) == [0, 1, 4]
    assert non_dominated([]) == [] and non_dominated([(5,), (3,), (3,), (4,)]) == [1]


def test_front_of_random_points_is_non_dominated_and_covers_the_rest():
    """On 300 random 2- and 3-D points (with ties), no front point is dominated by any point and every other point
    is dominated by, or equal to, a front point."""
    generator = torch.Generator().manual_seed(0)
    for dims in (2, 3):
        points = [tuple(p) for p in torch.randint(0, 12, (300, dims), generator=generator).tolist()]
        front = non_dominated(points)
        assert front and all(not dominates(q, points[i]) for i in front for q in points)
        for p in points:
            assert any(points[i] == p or dominates(points[i], p) for i in front)
        assert len({points[i] for i in front}) == len(front)


def test_ranks_peel_fronts():
    """Non-dominated sorting: the stairs are rank 0, (2, 3) rank 1, the two equal (3, 3) rank 2."""
    assert ranks([*STAIRS, (2, 3), (3, 3), (3, 3)]) == [0, 0, 0, 1, 2, 2]


def test_crowding_distance_by_hand():
    """Extremes get infinity; (2, 3) of (1,5), (2,3), (4,2), (5,1) gets 3/4 + 3/4, (4, 2) gets 3/4 + 2/4; a flat
    objective adds nothing."""
    assert crowding([(1, 5), (2, 3), (4, 2), (5, 1)]) == [math.inf, 1.5, 1.25, math.inf]
    assert crowding(STAIRS) == [math.inf, 2.0, math.inf]
    assert crowding([(1, 0), (2, 0), (3, 0)]) == [math.inf, 1.0, math.inf]
    assert crowding([]) == []


def test_hypervolume_2d_by_hand():
    """The stairs against (4, 4) cover 6 (inclusion-exclusion of the three boxes: 3 + 4 + 3 - 2 - 1 - 2 + 1); a
    dominated point, a point outside the reference box and one on its edge add nothing."""
    assert hypervolume(STAIRS, (4, 4)) == 6.0
    assert hypervolume([*STAIRS, (3, 3), (5, 0), (4, 0), (0, 4)], (4, 4)) == 6.0
    assert hypervolume([(0, 0)], (2, 3)) == 6.0 and hypervolume([], (1, 1)) == 0.0


def test_hypervolume_3d_by_hand():
    """A box (1,1,1)-(2,3,4) is 6; boxes of (0,0,1) and (1,1,0) against (2,2,2) are 4 + 2 - 1 = 5."""
    assert hypervolume([(1, 1, 1)], (2, 3, 4)) == 6.0
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == 5.0


def test_hypervolume_equals_counting_grid_cells():
    """On integer points, the hypervolume equals the number of unit cells of the reference box that some point
    dominates (an independent count), in 2 and 3 dimensions."""
    generator = torch.Generator().manual_seed(1)
    for dims, size in ((2, 8), (3, 5)):
        points = [tuple(p) for p in torch.randint(0, size, (12, dims), generator=generator).tolist()]
        reference = (size,) * dims
        cells = sum(any(all(p[d] <= c[d] for d in range(dims)) for p in points)
                    for c in itertools.product(range(size), repeat=dims))
        assert hypervolume(points, reference) == pytest.approx(cells)
