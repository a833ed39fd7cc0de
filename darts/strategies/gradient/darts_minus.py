"""DARTS-: Robustly Stepping out of Performance Collapse Without Indicators (Chu et al., ICLR 2021).

DARTS with an auxiliary skip connection on every edge of both cell types, outside the architecture's competition
(the paper's mixed op):  o_bar(x) = beta * skip(x) + sum_k softmax(alpha)_k * o_k(x). skip is the identity at
stride 1 and, on the stride-2 edges of a reduction cell, an affine-free FactorizedReduce with its own weights (not
the `skip_connect` candidate's): the supernet builds it, as ``supernet_options`` asks (``darts.supernet.CellDAG``).
beta decays linearly from ``skip_beta`` to 0 over the search, beta_t = skip_beta * (T - t) / T at epoch t of T, so
the supernet ends close to DARTS's; everything else (arch step, genotype) is DARTS's.
Code: Meituan-AutoML/DARTS- src/search/model_search.py ``MixedOp``, src/utils.py ``DecayScheduler`` (``linear``:
base * (T_max - epoch) / (T_max - T_start), T_start = 0, T_max = T_stop = 50 = the epochs),
scripts/run_darts_minus.sh (``--auxiliary_skip --skip_beta 1 --decay linear``).
"""
from __future__ import annotations

from typing import Any

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet, SupernetOptions
from search_spaces.base import SearchSpace


class DARTSMinus(DARTS):
    """DARTS whose mixing adds beta_t times each edge's auxiliary skip (module docstring).

    Args:
        skip_beta: beta at epoch 0, decayed linearly to 0 at epoch T (args.py ``--skip_beta``, run_darts_minus.sh: 1).
        order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch: as ``DARTS`` (args.py: first
            order, Adam 3e-4 with weight decay 1e-3; architect.py: betas (0.5, 0.999); arch steps from epoch 0).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, skip_beta: float = 1.0, order: int = 1,
                 arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
                 fd_radius: float = 0.01, arch_start_epoch: int = 0, **early_stop: Any):
        if skip_beta < 0:
            raise ValueError(f"strategy.skip_beta={skip_beta!r} must be >= 0")
        if not supernet.structure.auxiliary_skip:
            raise ValueError("DARTS- needs a supernet with auxiliary skips (build it with DARTSMinus.supernet_options)")
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch,
                         **early_stop)
        self.skip_beta = skip_beta
        self.beta = skip_beta  # DecayScheduler.decay_rate before the first epoch: the base value

    @classmethod
    def supernet_options(cls, **settings: Any) -> SupernetOptions:
        """An auxiliary skip on every edge (run_darts_minus.sh ``--auxiliary_skip``)."""
        return SupernetOptions(auxiliary_skip=True)

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """beta_t = skip_beta * (epochs - epoch) / epochs (utils.py ``DecayScheduler``, decay_type ``linear``)."""
        super().epoch_start(epoch, epochs)
        self.beta = self.skip_beta * (epochs - epoch) / epochs

    def mixing(self) -> dict[str, Mixing]:
        """DARTS's softmax(alphas) [E, K] per cell type, with beta_t as every edge's auxiliary skip weight."""
        return {t: Mixing(m.weights, skip_weight=self.beta) for t, m in super().mixing().items()}

    def scalars(self) -> dict[str, Any]:
        """DARTS's entropies and beta_t."""
        return {**super().scalars(), "skip_beta": self.beta}
