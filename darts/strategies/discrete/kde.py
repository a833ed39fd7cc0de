"""BOHB's model over genotypes: kernel density estimates of good and bad genotypes on their discrete choices.

Falkner, Klein and Hutter, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale" (ICML 2018),
sec. 3.1 and Algorithm 2, as automl/HpBandSter hpbandster/optimizers/config_generators/bohb.py fits them
with statsmodels ``KDEMultivariate`` (var_type 'u' for every categorical parameter):

    bandwidth_d = 1.06 std(X_d) N^(-1 / (4 + D))        (normal reference rule, statsmodels ``_normal_reference``)
    K(x, X_i) = prod_d [1 - bw_d if x_d = X_id else bw_d / (c_d - 1)]      (Aitchison-Aitken kernel)
    pdf(x) = mean_i K(x, X_i)

A genotype is a vector of D categorical choices: the op index of every edge of every cell type
(``space.op_indices``), c_d = ``space.choices`` values each (DARTS: `none`, or index K where an edge searches no
`none`, marks an unused edge).
A proposal vector becomes a genotype through ``space.derive`` of its one-hot weights: exact for
NB201 and the toy space, a projection for DARTS (each node keeps the 2 inputs whose op is not `none`,
lower inputs first on ties, as the DARTS rule does), and the acquisition scores the projected genotype.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from search_spaces.base import SearchSpace


def encode(space: SearchSpace, genotype: Any) -> torch.Tensor:
    """The genotype's op index on every edge of every cell type ([D] int64, D = cell types x edges)."""
    return space.op_indices(genotype).flatten()


def decode(space: SearchSpace, vector: torch.Tensor) -> Any:
    """The genotype ``space.derive`` gives for the one-hot weights of ``vector`` ([D] op indices; an unused edge's
    index K becomes a row of zeros)."""
    weights = F.one_hot(vector, space.choices).float().view(len(space.cell_types), -1, space.choices)  # [T, E, c]
    weights = weights[..., :space.ops.k]  # [T, E, K]
    return space.derive(dict(zip(space.cell_types, weights)))


class CategoricalKDE:
    """A product Aitchison-Aitken kernel density over categorical vectors.

    Args:
        data: [N, D] category indices.
        levels: the number of categories of every dimension (c >= 2).
        min_bandwidth: the smallest bandwidth (HpBandSter ``min_bandwidth``: diversity when the data agree).

    Bandwidths are the normal reference rule clipped to [min_bandwidth, (c - 1) / c]: at (c - 1) / c the
    kernel is uniform; statsmodels leaves larger values, which make ``1 - bw`` negative.
    """

    def __init__(self, data: torch.Tensor, levels: int, min_bandwidth: float):
        self.data, self.levels = data, levels
        n, d = data.shape
        bw = 1.06 * data.double().std(dim=0, unbiased=False) * n ** (-1.0 / (4 + d))  # [D]
        self.bw = bw.clamp(min_bandwidth, (levels - 1) / levels)  # [D]

    def log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """log pdf of each row of ``x`` ([S, D] category indices) -> [S]."""
        same = x[:, None, :] == self.data[None, :, :]  # [S, N, D]
        kernel = torch.where(same, 1 - self.bw, self.bw / (self.levels - 1))  # [S, N, D]
        return torch.logsumexp(kernel.log().sum(dim=-1), dim=1) - math.log(len(self.data))

    def sample_near(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` vectors, each a random datum with every choice redrawn uniformly with probability bw ([count, D];
        HpBandSter ``get_config``: keep ``m`` with probability 1 - bw, else ``randint(t)``, which may redraw ``m``)."""
        rows = self.data[torch.randint(len(self.data), (count,), generator=generator)]  # [count, D]
        keep = torch.rand(rows.shape, generator=generator, dtype=torch.float64) < 1 - self.bw  # [count, D]
        uniform = torch.randint(self.levels, rows.shape, generator=generator)  # [count, D]
        return torch.where(keep, rows, uniform)


def propose(space: SearchSpace, good: CategoricalKDE, bad: CategoricalKDE, num_samples: int,
            generator: torch.Generator) -> Any:
    """Of ``num_samples`` genotypes drawn near good data (projected by ``decode``), the first minimising g(x) / l(x)
    (BOHB Algorithm 2, line 6; the ratio compared in log space, where HpBandSter clamps both densities at 1e-32)."""
    genotypes = [decode(space, v) for v in good.sample_near(num_samples, generator)]
    candidates = torch.stack([encode(space, g) for g in genotypes])  # [S, D]
    ratio = bad.log_pdf(candidates) - good.log_pdf(candidates)  # [S]
    return genotypes[int(torch.argmin(ratio))]
