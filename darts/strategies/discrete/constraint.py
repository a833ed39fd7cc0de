"""A search under a budget: upper bounds on the cost of a genotype's network (``constraint.flops=20``).

An infeasible genotype is never evaluated: a strategy draws its proposals through ``first``/``require`` (redrawing, from
its own generator, until one is feasible) or filters them with ``admits``, and every infeasible genotype drawn counts
in ``rejected``. The draws come from the strategy's generator, so replaying a history redraws (and counts) the same
rejections. Which redraw suits a strategy is its own choice (see each strategy's docstring).

The cost of a genotype is an injected function, ``cost(genotype) -> {"params": M, "flops": M MACs[, "latency": ms]}``:
the exact network cost of the space (``params`` in millions, ``flops`` in millions of multiply-accumulates as
NAS-Bench-201 and NATS-Bench count them, ``latency`` in milliseconds when a latency table is attached).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from darts.settings import number

COSTS = ("params", "flops", "latency")  # the metrics a cost function may give: millions, millions of MACs, ms
TRIES = 1000  # draws before a constraint is declared unsatisfiable
Cost = Callable[[Any], Mapping[str, float]]  # genotype -> its cost metrics


def cached(cost: Cost, key: Callable[[Any], str]) -> Cost:
    """``cost``, each genotype measured once (by ``key``, e.g. the space's ``to_text``)."""
    measured: dict[str, Mapping[str, float]] = {}

    def lookup(genotype: Any) -> Mapping[str, float]:
        text = key(genotype)
        if text not in measured:
            measured[text] = dict(cost(genotype))
        return measured[text]
    return lookup


def metric(cost: Mapping[str, float], name: str, key: str) -> float:
    """``cost[name]``; ValueError naming the setting ``key`` when the cost function does not give that metric."""
    if name not in cost:
        raise ValueError(f"{key}: the cost model gives {', '.join(sorted(cost))} only (latency needs "
                         "latency_table=<a darts-latency table>)")
    return float(cost[name])


class Constraint:
    """Upper bounds on cost metrics: which genotypes may be evaluated, and how many drawn ones were not.

    Args:
        limits: metric (``params``, ``flops`` or ``latency``) -> the largest value allowed; None or absent: no bound.
        cost: genotype -> its cost metrics (needed as soon as a limit is set).
    """

    def __init__(self, limits: Mapping[str, float | None] | None = None, cost: Cost | None = None):
        self.limits = {name: limit for name, limit in (limits or {}).items() if limit is not None}
        for name, limit in self.limits.items():
            if name not in COSTS:
                raise ValueError(f"constraint.{name} is not a cost metric; choose one of {', '.join(COSTS)}")
            number(f"constraint.{name}", limit, 0, low_open=True)
        if self.limits and cost is None:
            raise ValueError(f"{self} needs a cost model of the space's networks to check genotypes against")
        self.cost = cost
        self.rejected = 0  # infeasible genotypes drawn (never evaluated)

    def __bool__(self) -> bool:
        return bool(self.limits)

    def __str__(self) -> str:
        return ", ".join(f"constraint.{name}={limit:g}" for name, limit in self.limits.items()) or "no constraint"

    def feasible(self, genotype: Any) -> bool:
        """Whether every limited metric of ``genotype`` is at most its limit."""
        if not self.limits:
            return True
        cost = self.cost(genotype)
        return all(metric(cost, name, f"constraint.{name}") <= limit for name, limit in self.limits.items())

    def admits(self, genotype: Any) -> bool:
        """``feasible(genotype)``, counting a rejection when it is not."""
        ok = self.feasible(genotype)
        self.rejected += not ok
        return ok

    def first(self, draw: Callable[[], Any], tries: int = TRIES) -> Any | None:
        """The first feasible genotype of up to ``tries`` calls of ``draw`` (one call without limits), else None."""
        for _ in range(tries):
            genotype = draw()
            if self.admits(genotype):
                return genotype
        return None

    def require(self, draw: Callable[[], Any], tries: int = TRIES) -> Any:
        """``first(draw, tries)``; ValueError naming the constraint when no draw was feasible."""
        genotype = self.first(draw, tries)
        if genotype is None:
            raise ValueError(f"no genotype satisfies {self} in {tries} draws; raise the limit")
        return genotype
