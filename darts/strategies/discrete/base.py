"""The interface of discrete search strategies: propose genotypes, learn from their scores.

A discrete strategy never sees how a genotype is scored (a table lookup, training from scratch or
shared supernet weights): the run (``darts.runs.discrete.DiscreteRun``) calls, until ``done``,

    genotypes = strategy.ask()              # one generation, drawn from the state before it
    results = [evaluate(g) for g in genotypes]   # in any order, serially or by a worker pool
    strategy.tell(scores, costs)            # learn from the generation, in ask order

The budget counts evaluations (``budget``) and, optionally, their cost in seconds (``time_budget``,
the evaluator's reported cost: wall time of training, or a table's recorded training time): the
search stops when either is spent (the generation that crosses ``time_budget`` is kept).

Every random draw comes from the strategy's own seeded ``torch.Generator``, and ``ask`` depends
only on that generator and the scores told so far. So a seed fixes the whole history whether a
generation is scored by one worker or many, and a run resumes exactly by replaying its recorded
scores (``history.jsonl``) through ``ask``/``tell``.

A generation is evaluated at one fidelity: ``_propose`` sets ``fidelity`` (None, the default, is the
evaluator's own: epochs of ``evaluator=train``, the column of ``evaluator=tabular``), which the run hands
to the evaluator and records with each candidate. A multi-fidelity strategy (Hyperband, BOHB) says
through ``final(fidelity)`` which scores may win: ``best()`` only considers those, so a cheap
low-fidelity score never beats a full evaluation.

Under a budget (``darts.strategies.discrete.constraint``), every proposal is feasible: the initial design
(``_sample``) redraws infeasible samples, a mutation (``_mutate``) is repaired by further mutations, and each strategy
says how it treats its own proposals. With cost
objectives (``darts.strategies.discrete.objectives``), ``front()`` is the Pareto front of what was evaluated and the
result (``best``) stays its most accurate genotype. A strategy that supports neither (``budgeted = False``) refuses them.

Like the gradient strategies (``darts.strategies.base.Strategy``), a discrete strategy has a
``space``, a current ``genotype()`` and ``scalars()`` for the logs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from darts.settings import integer, number
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from search_spaces.base import SearchSpace

MUTATION_STEPS = 20  # single mutations a repaired mutation may chain before giving up (under a constraint)


class DiscreteStrategy(ABC):
    """A search over discrete genotypes with a budget of evaluations.

    Args:
        space: the search space (sample, mutate).
        budget: evaluations in all (>= 1).
        seed: seeds the strategy's generator.
        time_budget: seconds of evaluation cost in all (None: no limit).
        warm: genotypes the initial design draws before any uniform sample (a warm start's, e.g. the best of a pool
            by a zero-cost proxy).
        constraint: upper bounds on a genotype's cost (None: none); infeasible genotypes are never proposed.
        objectives: what is optimised (None: the score alone); with cost objectives the Pareto front is kept.

    ``history`` lists ``(genotype, score)`` of every told candidate, in evaluation order, and ``fidelities``
    the fidelity each was scored at; ``spent`` is the total cost told so far.
    """

    multi_fidelity = False  # whether generations are asked at fidelities of their own (Hyperband, BOHB)
    budgeted = True  # whether it takes a constraint and cost objectives

    def __init__(self, space: SearchSpace, budget: int, seed: int, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        integer("strategy.budget", budget, 1)
        number("strategy.time_budget", time_budget, 0, low_open=True, nullable=True, unit=" (seconds)")
        self.space = space
        self.budget = budget
        self.time_budget = time_budget
        self.spent = 0.0
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[tuple[Any, float]] = []
        self.fidelities: list[Any] = []  # the fidelity of each history entry
        self.fidelity: Any = None  # the fidelity of the generation asked last (set by ``_propose``; None: the default)
        self.warm = list(warm)  # drawn before uniform samples
        self.constraint = constraint or Constraint()
        self.objectives = objectives or Objectives()
        if not self.budgeted and (self.constraint or self.objectives.multi):
            raise ValueError(f"{type(self).__name__} takes no constraint.* or cost objectives ({self.constraint}, "
                             f"objectives={list(self.objectives.names)}); use strategy=random|evolution|bo|pso")
        self._asked: list[Any] = []

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - len(self.history)

    @property
    def done(self) -> bool:
        """Whether the budget (evaluations, or seconds of cost) is spent."""
        return self.remaining <= 0 or (self.time_budget is not None and self.spent >= self.time_budget)

    def ask(self) -> list[Any]:
        """The next generation: at least one genotype, at most the remaining budget."""
        if self._asked:
            raise RuntimeError("ask() called twice without tell(); tell the scores of the last generation first")
        if self.done:
            raise RuntimeError(f"the budget is spent ({len(self.history)} evaluations, {self.spent:.0f} s)")
        self._asked = self._propose(self.remaining)
        return list(self._asked)

    def tell(self, scores: list[float], costs: list[float] | None = None) -> None:
        """The scores (higher is better) of the last generation, in ask order, and their costs in seconds."""
        if len(scores) != len(self._asked) or (costs is not None and len(costs) != len(scores)):
            raise ValueError(f"got {len(scores)} scores and {len(costs or scores)} costs for a generation of "
                             f"{len(self._asked)} genotypes")
        self.spent += sum(costs or [])
        told = list(zip(self._asked, map(float, scores)))
        self._asked = []
        self.history.extend(told)
        self.fidelities.extend([self.fidelity] * len(told))
        self._learn(told)

    def final(self, fidelity: Any) -> bool:
        """Whether a score at ``fidelity`` may be the result (every fidelity here; the top one for Hyperband)."""
        return True

    def best(self) -> tuple[Any, float]:
        """The first evaluated genotype of highest score at a final fidelity, and its score (NB201 R_EA.py /
        RANDOM.py ``best_arch``)."""
        finals = [item for item, fidelity in zip(self.history, self.fidelities) if self.final(fidelity)]
        if not finals:
            raise RuntimeError("no genotype has been evaluated at a final fidelity yet")
        return max(finals, key=lambda item: item[1])

    def genotype(self) -> Any:
        """The best genotype so far."""
        return self.best()[0]

    def front(self) -> list[tuple[Any, float]]:
        """The Pareto front (``objectives``) of the evaluations at a final fidelity, in evaluation order; with the score
        as the only objective, the first best one."""
        finals = [item for item, fidelity in zip(self.history, self.fidelities) if self.final(fidelity)]
        return [finals[i] for i in self.objectives.front(finals)]

    def scalars(self) -> dict[str, float]:
        """Algorithm-specific values to log after each generation."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The search state after the last tell, for the run's checkpoint (resuming replays the history instead,
        which rebuilds it exactly); default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (default: nothing to restore)."""

    def _told_state(self) -> dict[str, Any]:
        """What every strategy has been told (history as text, fidelities, cost spent), its remaining warm start,
        its generator and the infeasible genotypes it drew: the part of a ``state_dict`` shared by all strategies."""
        return {"history": [[self.space.to_text(g), score] for g, score in self.history],
                "fidelities": list(self.fidelities), "spent": self.spent,
                "warm": [self.space.to_text(g) for g in self.warm], "generator": self.generator.get_state(),
                "rejected": self.constraint.rejected}

    def _load_told_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_told_state`` saved."""
        self.history = [(self.space.parse(text), float(score)) for text, score in state["history"]]
        self.fidelities = list(state["fidelities"])
        self.spent = float(state["spent"])
        self.warm = [self.space.parse(text) for text in state["warm"]]
        self.generator.set_state(state["generator"])
        self.constraint.rejected = int(state.get("rejected", 0))

    def _sample(self) -> Any:
        """A genotype of the initial design: the warm start's next one, else a uniform sample of the space; under a
        constraint, the first feasible one of those (infeasible ones are skipped, counted)."""
        return self.constraint.require(lambda: self.warm.pop(0) if self.warm else self.space.sample(self.generator))

    def _mutate(self, parent: Any) -> Any | None:
        """A single mutation of ``parent`` (``space.mutate``); under a constraint an infeasible one is repaired by
        mutating it further, a random walk that stops at the first feasible genotype (at most ``MUTATION_STEPS``
        mutations; a walk back to ``parent`` goes on; None if none is feasible). The repair lets a child trade one costly op for another (two or more
        edges changed), which single mutations of a parent at the limit cannot: the repair operators of constrained
        evolutionary search (Coello Coello, "Theoretical and numerical constraint-handling techniques used with
        evolutionary algorithms: a survey of the state of the art", CMAME 191, 2002, sec. 4)."""
        child = parent
        for _ in range(MUTATION_STEPS):
            child = self.space.mutate(child, self.generator)
            if child != parent and self.constraint.admits(child):
                return child
        return None

    @abstractmethod
    def _propose(self, limit: int) -> list[Any]:
        """Between 1 and ``limit`` new genotypes, drawn from ``self.generator``; a multi-fidelity strategy also sets
        ``self.fidelity``."""

    def _learn(self, told: list[tuple[Any, float]]) -> None:
        """Update the search state with a scored generation (random search keeps none)."""
