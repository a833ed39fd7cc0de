"""beta-DARTS: Beta-Decay Regularization for Differentiable Architecture Search (Ye et al., CVPR 2022).

DARTS with the Beta-Decay regulariser added to the arch objective (the paper's method; official ``mlc_loss``):

    L_beta = mean over edges e of  log sum_k exp(alpha_{e,k}),

the smooth maximum (log-sum-exp) of each edge's alphas, averaged over every edge of every cell type. Its gradient
on an edge is softmax(alpha_e) / #edges: it pushes each edge's alphas down in proportion to their softmax, keeping
the value and variance of the activated architecture parameters from growing too large. The arch step minimises
L_val + lambda_t * L_beta with a weight that grows linearly over the search,

    lambda_t = reg_start + (reg_end - reg_start) * t / T     (epoch t of T),

the official ``weights = 0 + 50*epoch/100``. Code: Sunshine-Ye/Beta-DARTS optimizers/darts/architect.py
(``mlc_loss``, ``_backward_step``), nasbench201/train_search.py. The official DARTS-space script
(sota/cnn/train_search.py) passes the list of both cell types' alphas to ``mlc_loss``, where ``torch.logsumexp``
fails (issue #1); here both cell types' edges are averaged together. With order=2 the regulariser's gradient is added
to the hypergradient (the official unrolled step leaves it out; both official scripts search first order).
"""
from __future__ import annotations

from typing import Any

import torch

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Supernet
from search_spaces.base import SearchSpace


class BetaDARTS(DARTS):
    """DARTS whose arch objective adds lambda_t times the Beta-Decay regulariser (module docstring).

    Args:
        reg_start, reg_end: lambda_t at epoch 0 and at epoch T (reached after the last epoch), linear in between
            (architect.py ``0 + 50*epoch/100``: 0 -> 50 over NB201's 100 epochs, 0 -> 25 over 50 DARTS-space epochs).
        order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch: as ``DARTS`` (train_search.py:
            first order, Adam 3e-4 with betas (0.5, 0.999) and weight decay 1e-3, arch steps from epoch 0).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, reg_start: float = 0.0, reg_end: float = 25.0,
                 order: int = 1, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_weight_decay: float = 1e-3, fd_radius: float = 0.01, arch_start_epoch: int = 0,
                 **early_stop: Any):
        if reg_start < 0 or reg_end < 0:
            raise ValueError(f"strategy.reg_start={reg_start!r} and strategy.reg_end={reg_end!r} must be >= 0")
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch,
                         **early_stop)
        self.reg_start, self.reg_end = reg_start, reg_end
        self.reg_weight = reg_start  # lambda of the current epoch

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """lambda_t = reg_start + (reg_end - reg_start) * epoch / epochs."""
        super().epoch_start(epoch, epochs)
        self.reg_weight = self.reg_start + (self.reg_end - self.reg_start) * epoch / epochs

    def beta_decay(self) -> torch.Tensor:
        """L_beta: the mean over every edge of every cell type of logsumexp_k alpha_{e,k} (architect.py mlc_loss)."""
        alphas = torch.cat([self.supernet.alphas[t] for t in self.supernet.cell_types])  # [sum of E, K]
        return torch.logsumexp(alphas, dim=-1).mean()

    def arch_penalty(self) -> torch.Tensor:
        """lambda_t * L_beta, added to L_val in the arch step (architect.py ``_backward_step``)."""
        return self.reg_weight * self.beta_decay()

    def scalars(self) -> dict[str, Any]:
        """DARTS's entropies, lambda_t and L_beta."""
        return {**super().scalars(), "beta_decay/weight": self.reg_weight,
                "beta_decay/loss": self.beta_decay().detach()}
