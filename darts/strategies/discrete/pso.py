"""Particle swarm optimisation (PSO) over genotypes, with the space's own derivation as the decoder.

The algorithm is global-best PSO (Kennedy and Eberhart, "Particle Swarm Optimization", ICNN 1995) with the
inertia weight of Shi and Eberhart ("A Modified Particle Swarm Optimizer", ICEC 1998) set to Clerc and
Kennedy's constriction values ("The Particle Swarm: Explosion, Stability, and Convergence in a Multidimensional
Complex Space", IEEE TEVC 2002: phi = c1 + c2 = 4.1 gives chi = 0.72984, and chi (v + 2.05 r1 (p - x) + ...)
is the inertia form with w = chi, c1 = c2 = 2.05 chi = 1.49618), and a velocity clamp Vmax = Xmax, the range
of each position variable, as Eberhart and Shi recommend with constriction ("Comparing Inertia Weights and
Constriction Factors in Particle Swarm Optimization", CEC 2000).

Encoding. A particle's position ``x`` is, per cell type, a real tensor [E, c] over each edge's candidate ops (c =
``space.choices``: the K ops, plus "unused" where an edge searches no `none`). It is decoded by the space's
own derivation ``space.derive(x)``: the op of largest value on each edge (NB201, toy), and in the DARTS space
its rule (sec. 2.4: each node keeps the 2 inputs whose best non-none op is strongest). Every real position
thus decodes to a valid genotype, so positions are not confined to a box.

    x_i(0) = one_hot(_sample())            (the initial design: a warm start's genotypes, else uniform)
    v_i(0) ~ U(0 - x_i(0), 1 - x_i(0))     (SPSO 2011: U(l - x, u - x), Clerc 2012; one-hot range [0, 1])
    each generation: evaluate derive(x_i) for every particle i (generation 0: the sampled genotypes)
        p_i <- x_i where its score beats the particle's best; g <- the best p_i (the first on ties)
        v_i <- w v_i + c1 r1 * (p_i - x_i) + c2 r2 * (g - x_i),  r1, r2 ~ U(0, 1) per dimension
        v_i <- clamp(v_i, -vmax, vmax);  x_i <- x_i + v_i

Bests are updated after the whole generation is told and then every particle moves (synchronous PSO;
asynchronous variants update g after each particle's evaluation), so a worker pool can score a generation
concurrently and the number of workers never changes the history. A genotype proposed again (two particles
decoding alike, or a particle that did not move far enough to change its argmax) is evaluated again: the
history keeps one record per proposal and a noisy evaluator gets another sample.

Under a constraint the swarm starts feasible (``_sample``) and a particle whose move decodes to an infeasible genotype
is repaired: pulled back along its move towards its last (feasible) position, its velocity halved each time (up to
``HALVINGS`` times; as SPSO 2011 confines a particle that leaves the domain and damps its velocity, Clerc 2012), then,
if still infeasible, restarted at a feasible sample with a fresh velocity (PSO that preserves feasibility: Hu and
Eberhart, "Solving Constrained Nonlinear Optimization Problems with Particle Swarm Optimization", 2002).

With cost objectives the swarm is a multi-objective PSO (Coello Coello, Pulido and Lechuga, "Handling Multiple
Objectives With Particle Swarm Optimization", IEEE TEVC 8(3), 2004): a particle's best is replaced by a position that
dominates it, or, when neither dominates the other, by a fair coin; instead of one global best, each particle follows
a leader drawn from the Pareto front of all evaluations by a binary tournament on crowding distance (SMPSO: Nebro et
al., "SMPSO: A New PSO-based Metaheuristic for Multi-objective Optimization", IEEE MCDM 2009), at the leader's one-hot
position.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from darts.strategies.discrete.pareto import crowding, dominates
from search_spaces.base import SearchSpace, randint

Swarm = dict[str, torch.Tensor]  # per cell type, [S, E, K]
HALVINGS = 3  # velocity halvings of an infeasible particle before it restarts at a feasible sample


def velocity(v: torch.Tensor, x: torch.Tensor, p: torch.Tensor, g: torch.Tensor, r1: torch.Tensor,
             r2: torch.Tensor, w: float, c1: float, c2: float, vmax: float | None) -> torch.Tensor:
    """Shi and Eberhart 1998's velocity rule ``w v + c1 r1 (p - x) + c2 r2 (g - x)``, clamped to [-vmax, vmax].

    Args:
        v, x, p, r1, r2: [S, E, K] velocities, positions, personal bests and uniform draws.
        g: [E, K] the global best (broadcast over the swarm).
    """
    new = w * v + c1 * r1 * (p - x) + c2 * r2 * (g - x)  # [S, E, K]
    return new if vmax is None else new.clamp(-vmax, vmax)


def _clone(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of per-cell-type tensors."""
    return {c: t.clone() for c, t in tensors.items()}


class ParticleSwarm(DiscreteStrategy):
    """Global-best PSO over per-edge op positions, decoded by ``space.derive``; a generation is one swarm step.

    Args:
        space: the search space (sample, one_hot, derive).
        budget: evaluations in all, the initial swarm included.
        swarm: particles S (None: SPSO 2007's 10 + floor(2 sqrt(D)), D the number of position variables).
        w: inertia weight (Clerc and Kennedy 2002's constriction chi = 0.7298).
        c1: acceleration towards the particle's best (chi * 2.05 = 1.49618).
        c2: acceleration towards the swarm's best (chi * 2.05 = 1.49618).
        vmax: velocity clamp per dimension (None: none; Eberhart and Shi 2000: Vmax = Xmax = 1 for one-hot).
        seed: seeds the initial swarm and the draws r1, r2.
        time_budget: seconds of evaluation cost in all (None: no limit).
        warm, constraint, objectives: as ``DiscreteStrategy``.
    """

    def __init__(self, space: SearchSpace, budget: int = 100, swarm: int | None = None, w: float = 0.7298,
                 c1: float = 1.49618, c2: float = 1.49618, vmax: float | None = 1.0, seed: int = 0,
                 time_budget: float | None = None, warm: Sequence[Any] = (), constraint: Constraint | None = None,
                 objectives: Objectives | None = None):
        super().__init__(space, budget, seed, time_budget, warm, constraint, objectives)
        dims = len(space.cell_types) * space.num_edges * space.choices
        self.swarm_size = 10 + math.floor(2 * math.sqrt(dims)) if swarm is None else swarm
        if self.swarm_size < 1:
            raise ValueError(f"swarm={swarm} must be >= 1 particles (or null: 10 + 2 sqrt(D) = "
                             f"{10 + math.floor(2 * math.sqrt(dims))} here)")
        for name, value in (("w", w), ("c1", c1), ("c2", c2)):
            if value < 0:
                raise ValueError(f"{name}={value} must be >= 0")
        if vmax is not None and vmax <= 0:
            raise ValueError(f"vmax={vmax} must be > 0 (or null: no velocity clamp)")
        self.w, self.c1, self.c2, self.vmax = w, c1, c2, vmax
        self.positions: Swarm = {}
        self.velocities: Swarm = {}
        self.best_positions: Swarm = {}
        self.best_scores = torch.full((self.swarm_size,), -math.inf, dtype=torch.float64)  # [S]
        self.global_best: dict[str, torch.Tensor] = {}  # per cell type, [E, K]
        self.global_score = -math.inf
        # with cost objectives, each particle's best objective vector (minimised; inf: none yet) [S, d]
        self.best_points = torch.full((self.swarm_size, len(self.objectives.names)), math.inf, dtype=torch.float64) \
            if self.objectives.multi else None

    def _propose(self, limit: int) -> list[Any]:
        """The sampled swarm first, then every particle moved once and decoded (the first ``limit`` of them), each
        repaired to a feasible genotype under a constraint."""
        if not self.positions:
            return self._initialise()[:limit]
        previous = _clone(self.positions)
        self._move()
        return [self._feasible(i, previous) for i in range(min(self.swarm_size, limit))]

    def _decode(self, i: int) -> Any:
        """Particle i's genotype (``space.derive`` of its position)."""
        return self.space.derive({c: x[i, :, :self.space.ops.k] for c, x in self.positions.items()})

    def _feasible(self, i: int, previous: Swarm) -> Any:
        """Particle i's genotype; while it is infeasible, the particle is pulled back along its move from ``previous``
        (its velocity halved, ``HALVINGS`` times), then restarted at a feasible sample with a fresh velocity."""
        for _ in range(HALVINGS + 1):
            genotype = self._decode(i)
            if self.constraint.admits(genotype):
                return genotype
            for c, x in self.positions.items():
                self.velocities[c][i] /= 2
                x[i] = previous[c][i] + self.velocities[c][i]
        genotype = self._sample()
        for c, x in self._encode(genotype).items():  # [E, K]
            self.positions[c][i] = x
            self.velocities[c][i] = torch.rand(x.shape, generator=self.generator) - x  # U(0, 1) - x, as initially
        return genotype

    def _encode(self, genotype: Any) -> dict[str, torch.Tensor]:
        """The genotype's one-hot op indices, per cell type [E, c] (c = ``space.choices``)."""
        k = self.space.choices
        return {c: F.one_hot(index, k).float() for c, index in zip(self.space.cell_types, self.space.op_indices(genotype))}

    def _initialise(self) -> list[Any]:
        """S genotypes of the initial design as one-hot positions, with SPSO 2011's velocities U(-x, 1 - x)."""
        genotypes = [self._sample() for _ in range(self.swarm_size)]
        encoded = [self._encode(g) for g in genotypes]
        for c in self.space.cell_types:
            x = torch.stack([e[c] for e in encoded])  # [S, E, K]
            self.positions[c] = x
            self.velocities[c] = torch.rand(x.shape, generator=self.generator) - x  # U(0, 1) - x
            self.best_positions[c] = x.clone()
        return genotypes

    def _move(self) -> None:
        """One synchronous step of every particle towards its own best and the swarm's best (with cost objectives,
        its leader)."""
        leaders = self._leaders() if self.objectives.multi else self.global_best  # per cell type, [S, E, K] or [E, K]
        for c in self.space.cell_types:
            x = self.positions[c]  # [S, E, K]
            r1 = torch.rand(x.shape, generator=self.generator)
            r2 = torch.rand(x.shape, generator=self.generator)
            self.velocities[c] = velocity(self.velocities[c], x, self.best_positions[c], leaders[c],
                                          r1, r2, self.w, self.c1, self.c2, self.vmax)
            self.positions[c] = x + self.velocities[c]

    def _leaders(self) -> Swarm:
        """Per particle, the one-hot position of a Pareto-front genotype, the less crowded of two drawn uniformly
        (SMPSO's binary tournament on crowding distance; the first on ties)."""
        front = self.front()
        distance = crowding([self.objectives.point(g, s) for g, s in front])
        picks = []
        for _ in range(self.swarm_size):
            a, b = randint(self.generator, len(front)), randint(self.generator, len(front))
            picks.append(a if distance[a] >= distance[b] else b)
        encoded = [self._encode(front[p][0]) for p in picks]
        return {c: torch.stack([e[c] for e in encoded]) for c in self.space.cell_types}

    def _learn(self, told: list[tuple[Any, float]]) -> None:
        """Each told particle's best (strictly better scores only; with cost objectives, Coello et al.'s dominance
        rule), then the swarm's best score, in ask order."""
        for i, (genotype, score) in enumerate(told):
            if self._improves(i, genotype, score):
                self.best_scores[i] = score
                for c, x in self.positions.items():
                    self.best_positions[c][i] = x[i]
            if score > self.global_score:
                self.global_score = score
                self.global_best = {c: x[i].clone() for c, x in self.positions.items()}

    def _improves(self, i: int, genotype: Any, score: float) -> bool:
        """Whether particle i's new position becomes its best: a strictly better score; with cost objectives, a
        point that dominates its best's, or one that neither dominates nor is dominated by it on a fair coin (Coello
        et al. 2004, sec. III)."""
        if self.best_points is None:
            return score > self.best_scores[i]
        point, best = self.objectives.point(genotype, score), self.best_points[i].tolist()
        better = dominates(point, best) or (not dominates(best, point)
                                            and float(torch.rand((), generator=self.generator)) < 0.5)
        if better:
            self.best_points[i] = torch.tensor(point, dtype=torch.float64)
        return better

    def scalars(self) -> dict[str, float]:
        """The swarm's best score, its particles' mean best score and their mean absolute velocity."""
        if not self.velocities:
            return {}
        told = self.best_scores[self.best_scores > -math.inf]
        speed = torch.cat([v.abs().flatten() for v in self.velocities.values()]).mean()
        return {"global_best": self.global_score, "personal_best_mean": float(told.mean()),
                "velocity_mean_abs": float(speed)}

    def state_dict(self) -> dict[str, Any]:
        """The swarm (positions, velocities, personal and global bests), the told history (genotype text, score),
        the cost spent, the remaining warm start and the generator: enough for ``load_state_dict`` to continue
        exactly as this strategy would."""
        return {"positions": _clone(self.positions), "velocities": _clone(self.velocities),
                "best_positions": _clone(self.best_positions), "best_scores": self.best_scores.clone(),
                "global_best": _clone(self.global_best), "global_score": self.global_score, **self._told_state(),
                **({} if self.best_points is None else {"best_points": self.best_points.clone()})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (between generations)."""
        self.positions, self.velocities = _clone(state["positions"]), _clone(state["velocities"])
        self.best_positions, self.global_best = _clone(state["best_positions"]), _clone(state["global_best"])
        self.best_scores, self.global_score = state["best_scores"].clone(), float(state["global_score"])
        if self.best_points is not None:
            self.best_points = state["best_points"].clone()
        self._load_told_state(state)
