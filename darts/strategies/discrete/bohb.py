"""BOHB: Falkner, Klein and Hutter, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale"
(ICML 2018), sec. 3 and Algorithm 2; official code automl/HpBandSter (hpbandster/optimizers/bohb.py,
config_generators/bohb.py).

Hyperband's brackets (``darts.strategies.discrete.hyperband``), but each new genotype of a bracket is, with
probability 1 - rho, proposed by a TPE-like model instead of sampled uniformly:

    b = the largest fidelity with enough observations: N >= N_min = d + 1 and both KDEs get more than d points
    good = the top max(N_min, q N) genotypes at b by score, bad = the next max(N_min, (1 - q) N)
    l, g = kernel density estimates of good and bad (``darts.strategies.discrete.kde``: Aitchison-Aitken kernels
           over the genotype's d categorical choices)
    propose, of num_samples genotypes drawn near good ones, the one minimising g(x) / l(x)

with rho = ``random_fraction``, q = ``top_n_percent`` / 100, d = cell types x edges. Without a model
(too few observations at every fidelity) every new genotype is uniform (``_sample``). The model is
refitted from the history at every bracket start, so a replayed history rebuilds it exactly.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.hyperband import Hyperband
from darts.strategies.discrete.kde import CategoricalKDE, encode, propose
from darts.strategies.discrete.objectives import Objectives
from search_spaces.base import SearchSpace


class BOHB(Hyperband):
    """Hyperband with new genotypes from a good/bad kernel density model (BOHB).

    Args:
        space, budget, max_fidelity, min_fidelity, eta, seed, time_budget, warm, constraint, objectives: as
            ``Hyperband``.
        min_points_in_model: observations at a fidelity before a model is fitted on it (None: d + 1).
        top_n_percent: the percentage of observations that fit the good density.
        num_samples: genotypes drawn to minimise g(x) / l(x).
        random_fraction: the fraction of new genotypes sampled uniformly regardless of the model.
        min_bandwidth: the smallest KDE bandwidth.
    """

    def __init__(self, space: SearchSpace, budget: int = 100, max_fidelity: int = 12, min_fidelity: int = 1,
                 eta: int = 3, min_points_in_model: int | None = None, top_n_percent: int = 15,
                 num_samples: int = 64, random_fraction: float = 1 / 3, min_bandwidth: float = 1e-3,
                 seed: int = 0, time_budget: float | None = None,
                 warm: Sequence[Any] = (), constraint: Constraint | None = None, objectives: Objectives | None = None):
        super().__init__(space, budget, max_fidelity, min_fidelity, eta, seed, time_budget, warm, constraint,
                         objectives)
        self.dims = len(space.cell_types) * space.num_edges
        points = self.dims + 1 if min_points_in_model is None else min_points_in_model
        checks = (("min_points_in_model", points, self.dims + 1 <= points, f">= d + 1 = {self.dims + 1}"),
                  ("top_n_percent", top_n_percent, 1 <= top_n_percent <= 99, "in [1, 99]"),
                  ("num_samples", num_samples, num_samples >= 1, ">= 1"),
                  ("random_fraction", random_fraction, 0 <= random_fraction <= 1, "in [0, 1]"),
                  ("min_bandwidth", min_bandwidth, min_bandwidth > 0, "> 0"))
        for name, value, ok, valid in checks:
            if not ok:
                raise ValueError(f"{name}={value} must be {valid}")
        self.min_points, self.top_n_percent, self.num_samples = points, top_n_percent, num_samples
        self.random_fraction, self.min_bandwidth = random_fraction, min_bandwidth
        self.model_fidelity: int | None = None  # the fidelity of the last fitted model

    def scalars(self) -> dict[str, float]:
        """Hyperband's, and the fidelity of the model that proposed the last bracket (0: none yet)."""
        return {**super().scalars(), "model_fidelity": float(self.model_fidelity or 0)}

    def _new_configs(self, n: int) -> list[Any]:
        """``n`` genotypes: each uniform with probability ``random_fraction`` (always without a model), else the
        model's proposal (HpBandSter ``get_config``)."""
        model = self._model()
        configs = []
        for _ in range(n):
            if model is None or float(torch.rand((), generator=self.generator)) < self.random_fraction:
                configs.append(self._sample())
            else:
                configs.append(propose(self.space, *model, self.num_samples, self.generator))
        return configs

    def _model(self) -> tuple[CategoricalKDE, CategoricalKDE] | None:
        """(good, bad) densities on the largest fidelity that has enough observations (HpBandSter ``new_result``)."""
        for fidelity in sorted({f for f in self.fidelities if f is not None}, reverse=True):
            observed = [item for item, f in zip(self.history, self.fidelities) if f == fidelity]
            n = len(observed)
            n_good = max(self.min_points, self.top_n_percent * n // 100)
            n_bad = max(self.min_points, (100 - self.top_n_percent) * n // 100)
            ranked = sorted(observed, key=lambda item: -item[1])  # stable: ties keep the earlier candidate
            good, bad = ranked[:n_good], ranked[n_good:n_good + n_bad]
            if n < self.min_points or len(good) <= self.dims or len(bad) <= self.dims:
                continue
            self.model_fidelity = fidelity
            levels = self.space.choices
            return tuple(CategoricalKDE(torch.stack([encode(self.space, g) for g, _ in part]), levels,
                                        self.min_bandwidth) for part in (good, bad))
        return None
