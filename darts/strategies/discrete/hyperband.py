"""Hyperband: Li, Jamieson, DeSalvo, Rostamizadeh and Talwalkar, "Hyperband: A Novel Bandit-Based Approach
to Hyperparameter Optimization" (JMLR 18(185), 2018), Algorithm 1.

    s_max = floor(log_eta(R / r_min)),  B = (s_max + 1) R              (r_min = 1 in the paper's units)
    for s in s_max, s_max - 1, ..., 0:                                 (one bracket each)
        n = ceil(B / R * eta^s / (s + 1)),  r = R eta^-s
        T = n new configurations
        for i in 0..s:                                                  (successive halving)
            n_i = floor(n eta^-i),  r_i = r eta^i
            score every configuration of T at resource r_i
            T = the top floor(n_i / eta) of T by score

Here a configuration is a genotype and the resource a fidelity of the evaluator: training epochs
(``evaluator=train``, which trains a promoted candidate again from scratch at the larger budget, the
simplest form of Hyperband, sec. 3) or epochs of a table with per-epoch validation columns
(``evaluator=tabular``, ``fidelity_column``). A rung's fidelity is r_i in whole epochs, floored as
NATS-Bench's BOHB does (AutoDL-Projects exps/NATS-algos/bohb.py ``iepoch=int(budget)-1``): R=12, eta=3
gives rungs of 1, 4 and 12 epochs. Ties in a rung keep the earlier-evaluated candidate.

Brackets repeat in the order s_max..0 (the infinite-horizon Hyperband, sec. 3.3; HpBandSter
``get_next_iteration``) until the budget is spent. Each rung evaluation counts one against ``budget``.
A bracket that needs more evaluations than remain is skipped for the next one in the cycle that fits,
so no evaluations are spent on a bracket that cannot reach the top fidelity; when none fits, the last
bracket (s = 0: new genotypes at the top fidelity only) is cut to the remaining evaluations. So every
evaluation budget ends with top-fidelity scores. A ``time_budget`` (seconds of cost) cannot be
foreseen: under one, a rung is proposed one candidate at a time and the search stops as soon as the
time is spent, possibly mid-bracket (the run then reports no result until resumed with more time if no
candidate reached the top fidelity). Only top-fidelity scores may be the result (``final``), as
HpBandSter's incumbent (``Result.get_incumbent_id``: the best run on the maximum budget).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from search_spaces.base import SearchSpace

Bracket = list[tuple[int, float]]  # (n_i configurations, r_i resource) per rung


def brackets(max_fidelity: float, eta: int = 3, min_fidelity: float = 1) -> list[Bracket]:
    """Algorithm 1's brackets for s = s_max..0: each a list of (n_i, r_i) per rung (Li et al., Table 1 for R=81)."""
    s_max = 0
    while min_fidelity * eta ** (s_max + 1) <= max_fidelity * (1 + 1e-12):  # floor(log_eta(R / r_min)), exactly
        s_max += 1
    schedule = []
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) * eta ** s / (s + 1) - 1e-9)  # B / R = s_max + 1
        schedule.append([(n // eta ** i, max_fidelity / eta ** (s - i)) for i in range(s + 1)])
    return schedule


class Hyperband(DiscreteStrategy):
    """Brackets of successive halving over uniformly sampled genotypes (``_sample``).

    Args:
        space: the search space.
        budget: evaluations in all, each rung evaluation counting one.
        max_fidelity: R, the top fidelity (epochs); only scores at it may be the result.
        min_fidelity: the smallest fidelity a rung may have (the paper's unit resource).
        eta: the halving rate (the paper's and HpBandSter's default 3).
        seed: seeds the sampling.
        time_budget: seconds of evaluation cost in all (None: no limit).
        warm, constraint, objectives: as ``DiscreteStrategy`` (no constraint and no cost objectives: refused).
    """

    multi_fidelity = True
    budgeted = False

    def __init__(self, space: SearchSpace, budget: int = 100, max_fidelity: int = 12, min_fidelity: int = 1,
                 eta: int = 3, seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        super().__init__(space, budget, seed, time_budget, warm, constraint, objectives)
        if eta < 2:
            raise ValueError(f"eta={eta} must be an integer >= 2 (HpBandSter: 'Must be greater or equal to 2')")
        if not 1 <= min_fidelity <= max_fidelity:
            raise ValueError(f"min_fidelity={min_fidelity} and max_fidelity={max_fidelity} must satisfy "
                             "1 <= min_fidelity <= max_fidelity (epochs)")
        self.eta, self.min_fidelity = eta, min_fidelity
        self.schedule = brackets(max_fidelity, eta, min_fidelity)
        self.top = self._epochs(max_fidelity)
        self.started = 0  # brackets started (or skipped) so far: the next one is schedule[started % len]
        self.rungs: Bracket = []  # the active bracket's rungs still to run, the current one first
        self.pending: list[Any] = []  # the current rung's genotypes not yet proposed
        self.scored: list[tuple[Any, float]] = []  # the current rung's scores so far

    def final(self, fidelity: Any) -> bool:
        """Only a score at the top fidelity may be the result."""
        return fidelity == self.top

    def scalars(self) -> dict[str, float]:
        """The active bracket's rungs left and the fidelity of the last generation."""
        return {"rungs_left": float(len(self.rungs)), "fidelity": float(self.fidelity or 0)}

    def _epochs(self, resource: float) -> int:
        """A rung's fidelity: its resource in whole epochs (floored, at least ``min_fidelity``)."""
        return max(int(self.min_fidelity), int(resource + 1e-9))

    def _propose(self, limit: int) -> list[Any]:
        """The current rung's next genotypes (all of them, or one under a time budget), at its fidelity."""
        if not self.rungs:
            self._start_bracket(limit)
        self.fidelity = self._epochs(self.rungs[0][1])
        size = min(limit, 1 if self.time_budget is not None else len(self.pending))
        proposed, self.pending = self.pending[:size], self.pending[size:]
        return proposed

    def _start_bracket(self, remaining: int) -> None:
        """The next bracket in the cycle that fits the remaining evaluations, else the last one cut to them."""
        count = len(self.schedule)
        for k in range(count):
            rungs = self.schedule[(self.started + k) % count]
            if sum(n for n, _ in rungs) <= remaining:
                self.started += k + 1
                break
        else:
            self.started += count
            rungs = [(remaining, self.schedule[-1][0][1])]
        self.rungs = list(rungs)
        self.pending = self._new_configs(rungs[0][0])

    def _new_configs(self, n: int) -> list[Any]:
        """``n`` new genotypes for a bracket: uniform samples (or a warm start's)."""
        return [self._sample() for _ in range(n)]

    def _learn(self, told: list[tuple[Any, float]]) -> None:
        """Collect the rung's scores; once all are in, promote the top floor(n_i / eta) to the next rung."""
        self.scored.extend(told)
        if self.pending:
            return
        n_i = self.rungs.pop(0)[0]
        ranked = sorted(self.scored, key=lambda item: -item[1])  # stable: ties keep the earlier candidate
        self.pending = [genotype for genotype, _ in ranked[:n_i // self.eta]] if self.rungs else []
        self.scored = []
