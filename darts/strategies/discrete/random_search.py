"""Random search: sample genotypes uniformly, keep the best by the evaluator's score.

The baseline of Li and Talwalkar, "Random Search and Reproducibility for Neural Architecture
Search" (UAI 2019), and NAS-Bench-201's RS (Dong and Yang, ICLR 2020, sec. 5; code:
D-X-Y/AutoDL-Projects exps/NAS-Bench-201-algos/RANDOM.py). With ``evaluator=supernet`` it is
random search with weight sharing (Li and Talwalkar, sec. 4.2). All ``budget`` candidates form a
single generation, so a worker pool may score all of them at once; with a ``time_budget`` they are
proposed one at a time, so the search stops as soon as the time is spent.

Under a constraint an infeasible sample is redrawn (rejection sampling: the proposals are uniform over the feasible
genotypes). With cost objectives nothing changes in the sampling; the Pareto front of the samples is kept.
"""
from __future__ import annotations

from typing import Any, Sequence

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from search_spaces.base import SearchSpace


class RandomSearch(DiscreteStrategy):
    """Uniform samples of the space (``space.sample``); the result is the first best one.

    Args:
        space: the search space.
        budget: genotypes to sample and evaluate.
        seed: seeds the sampling.
        time_budget: seconds of evaluation cost in all (None: no limit).
        warm, constraint, objectives: as ``DiscreteStrategy``.
    """

    def __init__(self, space: SearchSpace, budget: int = 100, seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        super().__init__(space, budget, seed, time_budget, warm, constraint, objectives)

    def _propose(self, limit: int) -> list[Any]:
        """Every remaining candidate at once (the samples do not depend on any score); one under a time budget."""
        return [self._sample() for _ in range(limit if self.time_budget is None else 1)]
