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
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.predictor import MLPEnsemble
from search_spaces.base import SearchSpace

# naszilla data.py get_candidates / generate_random_dataset: mutate the best `num_arches_to_mutate * patience_factor`
# genotypes in turn until there are enough candidates; draw at most `num * patience_factor` random ones
PATIENCE = 5


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
    """

    def __init__(self, space: SearchSpace, budget: int = 100, initial: int = 10, k: int = 10, candidates: int = 100,
                 mutate_best: int = 1, members: int = 5, layers: int = 10, width: int = 20, epochs: int = 150,
                 batch_size: int = 32, lr: float = 0.01, seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = ()):
        super().__init__(space, budget, seed, time_budget, warm)
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

    def _candidates(self) -> list[Any]:
        """Unseen single mutations of the best genotypes (naszilla ``get_candidates``, acq_opt_type='mutation'): the
        ``mutate_best`` best are mutated ``candidates // mutate_best`` times each, then the next best while fewer
        than ``candidates`` were found, up to ``mutate_best * PATIENCE`` parents."""
        seen = {self.space.to_text(genotype) for genotype, _ in self.history}
        ranked = sorted(self.history, key=lambda item: -item[1])[:self.mutate_best * PATIENCE]  # stable: first best
        found: list[Any] = []
        for parent, _ in ranked:
            if len(found) >= self.candidates:
                break
            for _ in range(self.candidates // self.mutate_best):
                child = self.space.mutate(parent, self.generator)
                text = self.space.to_text(child)
                if text not in seen:
                    seen.add(text)
                    found.append(child)
        return found or self._unseen(lambda: self.space.sample(self.generator), self.k)

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
        per candidate; naszilla acquisition_functions.py ``acq_fn``, explore_type='its')."""
        candidates = self._candidates()
        self.predictor = self._fit()
        predictions = self.predictor.predict(torch.stack([self.space.encode(c) for c in candidates]))  # [E, C]
        its = torch.normal(predictions.mean(0), predictions.std(0, unbiased=False), generator=self.generator)  # [C]
        order = its.argsort(descending=True, stable=True)[:count]
        self._its = its[order]
        return [candidates[i] for i in order.tolist()]

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
