"""Regularized (aging) evolution: Real, Aggarwal, Huang and Le, "Regularized Evolution for Image
Classifier Architecture Search" (AAAI 2019), Algorithm 1.

    population <- `population` uniformly random genotypes (each evaluated)
    until `budget` evaluations:
        sample `sample` members uniformly, with replacement; the parent is the best of them
        child <- mutate(parent)               (``space.mutate``: one op, or in DARTS one input)
        evaluate child; append it to the population and remove the oldest member

Ties go to the first sampled member and the result is the first best genotype of the whole history,
as NB201's implementation (D-X-Y/AutoDL-Projects exps/NAS-Bench-201-algos/R_EA.py
``regularized_evolution``, whose ``random.choice`` draws with replacement).

``generation`` > 1 proposes that many children (or initial samples) at once, each from its own
tournament on the population as it stood before the generation, so a worker pool can evaluate
them concurrently; they then join the population in order, each removing the oldest member.
``generation=1`` (the default) is exactly Algorithm 1. The number of workers never changes the
history: only ``generation`` does.

Under a constraint, an infeasible child is repaired by mutating it further until it is feasible (``_mutate``: a random
walk of at most 20 single mutations), else replaced by a fresh feasible sample; the initial population is sampled
feasible. (Mutating the same parent again instead keeps every child one edge from its parent, and on NAS-Bench-201 at
a FLOPs limit that allows one 3x3 convolution it did no better than random search: docs/constrained-search.md.) With cost objectives the tournament ranks members by NSGA-II's
crowded comparison (Deb, Pratap, Agarwal and Meyarivan, IEEE TEVC 2002, sec. III-B: lower non-dominated rank in the
population, then larger crowding distance), the rest of Algorithm 1 (aging) unchanged; the Pareto front of every
evaluated genotype is kept apart from the population.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from search_spaces.base import SearchSpace, randint


class RegularizedEvolution(DiscreteStrategy):
    """Aging evolution with tournament selection and single mutations.

    Args:
        space: the search space (sample, mutate).
        budget: evaluations in all, the initial population included.
        population: members kept alive (P).
        sample: tournament size (S).
        generation: children proposed per generation (1 = the paper's sequential algorithm).
        seed: seeds sampling, tournaments and mutations.
        time_budget: seconds of evaluation cost in all (None: no limit; NB201's R-EA.sh uses 12,000 s of the
            table's recorded training time).
        warm, constraint, objectives: as ``DiscreteStrategy``.
    """

    def __init__(self, space: SearchSpace, budget: int = 100, population: int = 10, sample: int = 3,
                 generation: int = 1, seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        super().__init__(space, budget, seed, time_budget, warm, constraint, objectives)
        for name, value in (("population", population), ("sample", sample), ("generation", generation)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        self.population_size = population
        self.sample_size = sample
        self.generation = generation
        self.population: deque[tuple[Any, float]] = deque()  # oldest on the left

    def _propose(self, limit: int) -> list[Any]:
        """Random genotypes until the population is full, then mutated tournament winners."""
        size = min(self.generation, limit)
        missing = self.population_size - len(self.population)
        if missing > 0:
            return [self._sample() for _ in range(min(size, missing))]
        fitness = self.objectives.fitness(self.population)
        return [self._child(self._tournament(fitness)) for _ in range(size)]

    def _tournament(self, fitness: list[tuple[float, ...]]) -> Any:
        """The fittest (``objectives.fitness``: the score, or NSGA-II's crowded comparison) of ``sample`` members drawn
        uniformly with replacement (first one on ties)."""
        drawn = [randint(self.generator, len(self.population)) for _ in range(self.sample_size)]
        return self.population[max(drawn, key=lambda i: fitness[i])][0]

    def _child(self, parent: Any) -> Any:
        """A mutation of ``parent`` (repaired under a constraint), else a feasible sample."""
        child = self._mutate(parent)
        return self._sample() if child is None else child

    def _learn(self, told: list[tuple[Any, float]]) -> None:
        """Each new member joins on the right; once the population is full, the oldest leaves."""
        for member in told:
            self.population.append(member)
            if len(self.population) > self.population_size:
                self.population.popleft()

    def scalars(self) -> dict[str, float]:
        """Mean and best score of the living population."""
        scores = [score for _, score in self.population]
        return {"population_mean": sum(scores) / len(scores), "population_best": max(scores)} if scores else {}
