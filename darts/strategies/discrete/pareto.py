"""Pareto dominance, non-dominated sorting, crowding distance and hypervolume of objective vectors, every objective
minimised (a maximised one, such as accuracy, enters negated).

- Dominance and non-dominated sorting: Deb, Pratap, Agarwal and Meyarivan, "A Fast and Elitist Multiobjective Genetic
  Algorithm: NSGA-II" (IEEE TEVC 6(2), 2002), sec. III-A: a dominates b if it is no worse in every objective and
  better in one; rank 0 is the non-dominated set, rank k the non-dominated set once ranks 0..k-1 are removed.
- Crowding distance: the same paper, sec. III-B: per front, for each objective, the gap between a point's two
  neighbours in that objective divided by the objective's range; the extremes of each objective get infinity.
- Hypervolume (the S-metric of Zitzler and Thiele, "Multiobjective Evolutionary Algorithms: A Comparative Case Study
  and the Strength Pareto Approach", IEEE TEVC 3(4), 1999): the measure of the region that the points dominate and
  that a reference point bounds, exact in any dimension by slicing one objective at a time (HSO: While, Hingston,
  Barone and Huband, "A Faster Algorithm for Calculating Hypervolume", IEEE TEVC 10(1), 2006). A point that does not
  strictly dominate the reference adds nothing.
"""
from __future__ import annotations

import math
from typing import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in at least one (all minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b))


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices (ascending) of the points no other point dominates, the first of equal points only: the Pareto front.

    In lexicographic order a dominating point always comes first, so each point is checked against the front found
    so far only (O(n |front|) after the sort)."""
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]))  # stable: equal points keep their order
    front: list[int] = []
    for i in order:
        if not any(all(x <= y for x, y in zip(points[j], points[i])) for j in front):
            front.append(i)
    return sorted(front)


def ranks(points: Sequence[Point]) -> list[int]:
    """Each point's non-dominated rank (NSGA-II sec. III-A: 0 for the front, k once ranks < k are removed); equal
    points share a rank."""
    rank: list[int | None] = [None] * len(points)
    remaining, k = list(range(len(points))), 0
    while remaining:
        layer = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)]
        for i in layer:
            rank[i] = k
        remaining, k = [i for i in remaining if rank[i] is None], k + 1
    return rank


def crowding(points: Sequence[Point]) -> list[float]:
    """Each point's crowding distance within ``points`` (one front; NSGA-II sec. III-B): the sum over objectives of
    the normalised gap between its neighbours, infinite at either extreme of an objective with a range."""
    n = len(points)
    distance = [0.0] * n
    for m in range(len(points[0]) if n else 0):
        order = sorted(range(n), key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        if high == low:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for left, i, right in zip(order, order[1:], order[2:]):
            distance[i] += (points[right][m] - points[left][m]) / (high - low)
    return distance


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The measure of the region dominated by ``points`` and bounded by ``reference`` (HSO slicing: sort by the last
    objective; each slab between consecutive values is the slab's depth times the hypervolume, one dimension down, of
    the points at or below it)."""
    inside = sorted((tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))),
                    key=lambda p: p[-1])
    if not inside:
        return 0.0
    if len(reference) == 1:
        return float(reference[0] - inside[0][0])
    volume = 0.0
    for k, p in enumerate(inside):
        top = inside[k + 1][-1] if k + 1 < len(inside) else reference[-1]
        if top > p[-1]:
            volume += (top - p[-1]) * hypervolume([q[:-1] for q in inside[:k + 1]], reference[:-1])
    return volume
