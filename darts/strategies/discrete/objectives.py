"""What a discrete search optimises: ``objectives=[accuracy]`` (the default: the evaluator's score, maximised) or, in a
multi-objective search, the score and cost metrics of the genotype's network (``objectives=[accuracy, flops]``: the
cost minimised), whose Pareto front and hypervolume the search keeps (``darts.strategies.discrete.pareto``).

The hypervolume is measured against a reference point given in the objectives' own units: ``accuracy`` 0 by default,
and for each cost metric an upper bound (``hypervolume_reference.flops``; by default the constraint's limit on it,
``constraint.flops``). A point adds to the hypervolume only if it is strictly better than the reference in every
objective, so a fixed reference makes the hypervolumes of runs, generations and methods comparable.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from darts.strategies.discrete.constraint import COSTS, Cost, metric
from darts.strategies.discrete.pareto import crowding, hypervolume, non_dominated, ranks

ACCURACY = "accuracy"  # the evaluator's score (higher is better)
NAMES = (ACCURACY, *COSTS)
Scored = Sequence[tuple[Any, float]]  # (genotype, score) pairs


class Objectives:
    """The objectives of a search, and the Pareto front and hypervolume of scored genotypes under them.

    Args:
        names: ``accuracy`` and any cost metrics (``params``, ``flops``, ``latency``), each once.
        cost: genotype -> its cost metrics (needed with a cost objective).
        reference: the hypervolume's reference point by objective (``accuracy`` default 0); every cost objective needs
            one.
    """

    def __init__(self, names: Sequence[str] = (ACCURACY,), cost: Cost | None = None,
                 reference: Mapping[str, float | None] | None = None):
        self.names = tuple(names)
        bad = [n for n in self.names if n not in NAMES]
        if bad or ACCURACY not in self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"objectives=[{', '.join(self.names)}] is not valid: {ACCURACY} and any of "
                             f"{', '.join(COSTS)}, each once" + (f" ({', '.join(bad)} unknown)" if bad else ""))
        if self.multi and cost is None:
            raise ValueError(f"objectives=[{', '.join(self.names)}] needs a cost model of the space's networks")
        given = {k: v for k, v in (reference or {}).items() if v is not None}
        if unknown := [k for k in given if k not in NAMES]:
            raise ValueError(f"hypervolume_reference.{unknown[0]} is not an objective; choose one of {', '.join(NAMES)}")
        self.reference = {ACCURACY: 0.0, **{k: float(v) for k, v in given.items() if k in self.names}}
        missing = [n for n in self.names if n not in self.reference]
        if missing:
            raise ValueError(f"objectives=[{', '.join(self.names)}]: set hypervolume_reference.{missing[0]}, an upper "
                             f"bound on {missing[0]} (or constraint.{missing[0]}), as the hypervolume's reference point")
        self.cost = cost

    @property
    def multi(self) -> bool:
        """Whether cost metrics are objectives too."""
        return len(self.names) > 1

    def values(self, genotype: Any, score: float) -> dict[str, float]:
        """The objectives of a scored genotype, in their own units (``accuracy`` is ``score``)."""
        cost = self.cost(genotype) if self.multi else {}
        return {n: float(score) if n == ACCURACY else metric(cost, n, f"objectives: {n}") for n in self.names}

    def point(self, genotype: Any, score: float) -> tuple[float, ...]:
        """The objective vector to minimise: accuracy negated, costs as they are."""
        return self._minimised(self.values(genotype, score))

    def _minimised(self, values: Mapping[str, float]) -> tuple[float, ...]:
        """``values`` (by name) as a vector to minimise."""
        return tuple(-values[n] if n == ACCURACY else values[n] for n in self.names)

    def front(self, scored: Scored) -> list[int]:
        """Indices of the Pareto front of ``scored`` (the first of equal points, in order)."""
        return non_dominated([self.point(g, s) for g, s in scored])

    def hypervolume(self, scored: Scored) -> float:
        """The hypervolume of ``scored`` against ``reference`` (objectives' units: % x M MACs for accuracy x flops)."""
        return hypervolume([self.point(g, s) for g, s in scored], self._minimised(self.reference))

    def fitness(self, scored: Scored) -> list[tuple[float, ...]]:
        """A key per scored genotype, higher is better: its score alone; with cost objectives, NSGA-II's crowded
        comparison (Deb et al. 2002, sec. III-B): lower non-dominated rank, then larger crowding distance in its
        front."""
        if not self.multi:
            return [(score,) for _, score in scored]
        points = [self.point(g, s) for g, s in scored]
        rank = ranks(points)
        fitness: list[tuple[float, ...]] = [()] * len(points)
        for k in set(rank):
            members = [i for i, r in enumerate(rank) if r == k]
            for i, distance in zip(members, crowding([points[i] for i in members])):
                fitness[i] = (-k, distance)
        return fitness
