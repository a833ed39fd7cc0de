"""BANANAS: Bayesian optimisation with an ensemble of neural predictors (White, Neiswanger and Savani,
"BANANAS: Bayesian Optimization with Neural Architectures for Neural Architecture Search", AAAI 2021,
Algorithm 1; official code naszilla/naszilla ``nas_algorithms.py`` ``bananas``, and NASLib's
``optimizers/discrete/bananas/optimizer.py``):

    evaluate `initial` random genotypes
    until `budget` evaluations:
        train an ensemble of `members` feed-forward predictors on (encode(genotype), score) of every evaluation
        candidates <- mutations of the best evaluated genotypes (unseen ones, about `candidates` of them)
        for each candidate: mu, sigma <- mean and standard deviation of the members' predictions
        ITS (independent Thompson sampling, sec. 5): draw s ~ N(mu, sigma) per candidate independently
        evaluate the `k` candidates of largest s

The encoding is the space's ``encode`` (NB201: the paper's path encoding; other spaces: the adjacency
one-hot encoding), the predictor ``darts.strategies.discrete.predictor.MLPEnsemble``. Each fit draws its
initialisation and shuffles from a generator seeded by ``self.generator``, so ``ask`` depends only on
the seed and the told scores, and a run resumes exactly by replaying its history.

Under a constraint, the initial genotypes are sampled feasible and every candidate is a feasible mutation: an
infeasible one is repaired by mutating it further (``_mutate``), so the acquisition optimises over the feasible set
only and the pool can reach feasible cells more than one edge from the parents. (Filtering the mutations to the
feasible ones instead left BO no better than random search on NAS-Bench-201 at a FLOPs limit that allows one 3x3
convolution: docs/constrained-search.md.)

With cost objectives, each iteration draws a weight vector lambda and ranks by ParEGO's augmented Tchebycheff
scalarisation (Knowles, "ParEGO: A Hybrid Algorithm With On-Line Landscape Approximation for Expensive
Multiobjective Optimization Problems", IEEE TEVC 10(1), 2006, sec. III-B):

    lambda uniform over {l / s : l = 0..s}^d summing to 1   (s = 10 for 2 objectives, 4 for 3, 3 for 4)
    f_lambda(x) = max_j lambda_j f_j(x) + 0.05 sum_j lambda_j f_j(x),  f_j normalised to [0, 1] on the evaluations

It orders the genotypes to mutate and the candidates (lower is better). ParEGO models f_lambda itself; here the costs are
exact and cheap, so the ensemble still predicts the score alone (as single-objective BANANAS) and each candidate's ITS
draw of the score is scalarised with its exact costs.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import itertools

import torch

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.objectives import Objectives
from darts.strategies.discrete.predictor import MLPEnsemble
from search_spaces.base import SearchSpace, randint

# naszilla data.py get_candidates / generate_random_dataset: mutate the best `num_arches_to_mutate * patience_factor`
# genotypes in turn until there are enough candidates; draw at most `num * patience_factor` random ones
PATIENCE = 5
PAREGO_STEPS = {2: 10, 3: 4}  # ParEGO sec. III-B: s = 10 (11 weight vectors) for 2 objectives, 4 (15) for 3; else 3
RHO = 0.05  # ParEGO's augmentation coefficient


def weight_vectors(objectives: int) -> list[tuple[float, ...]]:
    """ParEGO's weight vectors: every (l_1 / s, ..., l_d / s) with non-negative integers l_j summing to s."""
    s = PAREGO_STEPS.get(objectives, 3)
    return [tuple(l / s for l in ls) for ls in itertools.product(range(s + 1), repeat=objectives) if sum(ls) == s]


def tchebycheff(f: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ParEGO's augmented Tchebycheff scalarisation of normalised objectives f [N, d] (lower is better) [N]."""
    weighted = f * weights  # [N, d]
    return weighted.max(dim=1).values + RHO * weighted.sum(dim=1)


class Bananas(DiscreteStrategy):
    """BANANAS with ITS over mutations of the best genotypes.

    Args:
        space: the search space (sample, mutate, encode).
        budget: evaluations in all, the initial ones included.
        initial: random genotypes evaluated before the first predictor (``self._sample()``: a warm start applies).
        k: genotypes evaluated per iteration (the ITS values' top k).
        candidates: mutations proposed per iteration (before removing evaluated and repeated ones).
        mutate_best: genotypes mutated per iteration, the best first (more while there are too few candidates).
        members: predictors in the ensemble.
        layers: hidden layers per predictor.
        width: units per hidden layer.
        epochs: training epochs per fit.
        batch_size: minibatch size.
        lr: Adam's learning rate.
        seed: seeds sampling, mutations, the predictors and ITS.
        time_budget: seconds of evaluation cost in all (None: no limit).
        warm, constraint, objectives: as ``DiscreteStrategy``.
    """

    def __init__(self, space: SearchSpace, budget: int = 100, initial: int = 10, k: int = 10, candidates: int = 100,
                 mutate_best: int = 1, members: int = 5, layers: int = 10, width: int = 20, epochs: int = 150,
                 batch_size: int = 32, lr: float = 0.01, seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        super().__init__(space, budget, seed, time_budget, warm, constraint, objectives)
        for name, value in (("initial", initial), ("k", k), ("candidates", candidates), ("mutate_best", mutate_best),
                            ("members", members), ("layers", layers), ("width", width), ("epochs", epochs),
                            ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        if lr <= 0:
            raise ValueError(f"lr={lr} must be > 0")
        self.initial, self.k, self.candidates, self.mutate_best = initial, k, candidates, mutate_best
        self.members, self.layers, self.width = members, layers, width
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.predictor: MLPEnsemble | None = None  # the last fit
        self._its: torch.Tensor | None = None  # the last iteration's ITS values of its proposals [k]

    def _propose(self, limit: int) -> list[Any]:
        """The initial random genotypes, then the top ITS candidates."""
        if len(self.history) < self.initial:
            return self._unseen(self._sample, min(self.initial - len(self.history), limit))
        return self._acquire(min(self.k, limit))

    def _unseen(self, draw: Callable[[], Any], count: int) -> list[Any]:
        """Up to ``count`` genotypes of ``draw()`` neither evaluated nor repeated, from at most ``count * PATIENCE``
        draws; a repeat only when the space has nothing new left (so at least one)."""
        seen = {self.space.to_text(genotype) for genotype, _ in self.history}
        fresh: dict[str, Any] = {}
        for _ in range(count * PATIENCE):
            genotype = draw()
            text = self.space.to_text(genotype)
            if text not in seen:
                fresh.setdefault(text, genotype)
                if len(fresh) == count:
                    break
        return list(fresh.values()) or [genotype]

    def _candidates(self, weights: torch.Tensor | None = None) -> list[Any]:
        """Unseen (feasible) mutations of the best genotypes (naszilla ``get_candidates``,
        acq_opt_type='mutation'; the best by score, or by the scalarisation under ``weights``): the ``mutate_best``
        best are mutated ``candidates // mutate_best`` times each, then the next best while fewer than ``candidates``
        were found, up to ``mutate_best * PATIENCE`` parents."""
        seen = {self.space.to_text(genotype) for genotype, _ in self.history}
        ranked = sorted(range(len(self.history)), key=lambda i: -self.history[i][1]) if weights is None else \
            self._scalarised(self.history, weights).argsort(stable=True).tolist()  # stable: the first best first
        found: list[Any] = []
        for i in ranked[:self.mutate_best * PATIENCE]:
            if len(found) >= self.candidates:
                break
            for _ in range(self.candidates // self.mutate_best):
                child = self._mutate(self.history[i][0])
                text = None if child is None else self.space.to_text(child)
                if text is not None and text not in seen:
                    seen.add(text)
                    found.append(child)
        return found or self._unseen(lambda: self.constraint.require(lambda: self.space.sample(self.generator)),
                                     self.k)

    def _fit(self) -> MLPEnsemble:
        """A new ensemble trained on every evaluation, scores standardised (mean 0, std 1) as targets."""
        x = torch.stack([self.space.encode(genotype) for genotype, _ in self.history])  # [N, D]
        scores = torch.tensor([score for _, score in self.history])  # [N]
        y = (scores - scores.mean()) / scores.std(unbiased=False).clamp_min(1e-12)  # [N]
        generator = torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=self.generator)))
        predictor = MLPEnsemble(x.shape[1], self.members, self.layers, self.width, generator)
        predictor.fit(x, y, self.epochs, self.batch_size, self.lr, generator)
        return predictor

    def _acquire(self, count: int) -> list[Any]:
        """The ``count`` candidates of largest ITS value (sec. 5: one draw of N(mean, std) of the members' predictions
        per candidate; naszilla acquisition_functions.py ``acq_fn``, explore_type='its'); with cost objectives, of
        smallest ParEGO scalarisation of that draw and the exact costs, under this iteration's weights."""
        weights = self._weights()
        candidates = self._candidates(weights)
        self.predictor = self._fit()
        predictions = self.predictor.predict(torch.stack([self.space.encode(c) for c in candidates]))  # [E, C]
        its = torch.normal(predictions.mean(0), predictions.std(0, unbiased=False), generator=self.generator)  # [C]
        value = its
        if weights is not None:  # back to score units (_fit standardises), then scalarised: lower is better
            scores = torch.tensor([score for _, score in self.history])  # [N]
            drawn = its * scores.std(unbiased=False).clamp_min(1e-12) + scores.mean()
            value = -self._scalarised(list(zip(candidates, drawn.tolist())), weights)
        order = value.argsort(descending=True, stable=True)[:count]
        self._its = its[order]
        return [candidates[i] for i in order.tolist()]

    def _weights(self) -> torch.Tensor | None:
        """ParEGO's weight vector of this iteration, drawn uniformly (None without cost objectives)."""
        if not self.objectives.multi:
            return None
        vectors = weight_vectors(len(self.objectives.names))
        return torch.tensor(vectors[randint(self.generator, len(vectors))])

    def _scalarised(self, scored: list[tuple[Any, float]], weights: torch.Tensor) -> torch.Tensor:
        """ParEGO's scalarisation of scored genotypes [N], each objective normalised by its range over the history."""
        known = torch.tensor([self.objectives.point(g, s) for g, s in self.history])  # [H, d]
        low, high = known.min(0).values, known.max(0).values
        points = torch.tensor([self.objectives.point(g, s) for g, s in scored])  # [N, d]
        return tchebycheff((points - low) / (high - low).clamp_min(1e-12), weights)

    def scalars(self) -> dict[str, float]:
        """The best and mean ITS value (standardised score) of the last iteration's proposals."""
        return {} if self._its is None else {"its_best": float(self._its[0]), "its_mean": float(self._its.mean())}

    def state_dict(self) -> dict[str, Any]:
        """The told data (genotype text, score), cost spent, remaining warm start, generator state and the last
        predictor's weights: enough for ``load_state_dict`` to continue exactly as this strategy would."""
        return {**self._told_state(), "predictor": None if self.predictor is None else self.predictor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` (between generations)."""
        self._load_told_state(state)
        self.predictor = None
        if state["predictor"] is not None:
            in_dim = self.space.encode(self.history[0][0]).numel()
            self.predictor = MLPEnsemble(in_dim, self.members, self.layers, self.width, torch.Generator())
            self.predictor.load_state_dict(state["predictor"])
