"""Lambda-DARTS: Mitigating Performance Collapse by Harmonizing Operation Selection among Cells (Movahedi et al.,
ICLR 2023).

DARTS whose weight step also aligns the cells' (layers') gradients with respect to their mixing weights. For the
L cells of a cell type, g_l = dL_train/dA_l is the gradient of the training loss with respect to cell l's copy of the
softmax'd alphas A (every cell mixes with the same values, each through its own copy). The layer alignment is

    R(w) = 2 / (L (L - 1)) * sum_{i<j} cos(g_i, g_j),

and the weights descend L_train(w, A) - lambda_t * R(w) (the official update adds lambda_t * (f - b) / (2 eps) to
the weights' gradient, which is -lambda_t * grad_w R): with p_l = dR/dg_l = 2 / (L (L - 1)) * (I - u_l u_l^T) / ||g_l||
* sum_k u_k (u_l = g_l / ||g_l||, the official ``P_l @ sum_u``), grad_w R = d/dw sum_l <dL/dA_l, p_l> with p fixed, a
Hessian-vector product taken by central finite differences along A_l -/+ eps p_l:

    f - b = grad_w L(w, A - eps p) - grad_w L(w, A + eps p) ~ -2 eps grad_w R,   eps = eps_0 / ||p||.

lambda_t grows linearly, lambda * epoch / (epochs - 1). The official DARTS-space code aligns the normal cells only
(the reduction cells' perturbation is set to zero and kept out of ||p||): ``cell_types`` names the aligned types,
by default the space's first (the DARTS space's normal cells; NB201's only type).
The arch step and the genotype are DARTS's. Code: dr-faustus/Lambda-DARTS sota/cnn/model_search.py (``forward``,
``get_perturbations``, ``get_reg_grads``), sota/cnn/train_search.py, NAS-Bench201/lib/models/cell_searchs/
search_model_darts_v1.py, NAS-Bench201/exps/algos/DARTS-V1.py and scripts-search/algos/DARTS-V1.sh.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any, Sequence

import torch

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet
from darts.training import Batch
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)


def alignment(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """R: the mean cosine similarity over the pairs of the layer gradients ``grads`` (each flattened [E * K])."""
    u = torch.stack([g.flatten() / g.norm() for g in grads])  # [L, E*K]
    L = len(grads)
    return ((u @ u.T).sum() - L) / (L * (L - 1))


def alignment_gradient(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """p_l = dR/dg_l = 2 / (L (L - 1)) * (sum_k u_k - u_l <u_l, sum_k u_k>) / ||g_l||, shaped like g_l (the official
    ``(1 / ||g_l||) (I - u_l u_l^T) @ sum_u``, weighted by one over the number of pairs)."""
    L = len(grads)
    u = [g / g.norm() for g in grads]
    total = sum(u)
    return [2 / (L * (L - 1)) * (total - v * (v * total).sum()) / g.norm() for g, v in zip(grads, u)]


class LambdaDARTS(DARTS):
    """DARTS whose weight step maximises the alignment of the cells' gradients (module docstring).

    Args:
        reg_lambda: lambda, reached at the last epoch (sota/cnn/train_search.py ``--lambda_`` 0.125; NB201's
            DARTS-V1.sh 0.25).
        epsilon_0: the finite-difference step ||eps p|| (train_search.py ``--epsilon_0`` 0.0001).
        cell_types: the cell types whose cells are aligned, each type with its own R; None = the space's first type,
            the DARTS space's normal cells (sota/cnn/model_search.py aligns those only) and NB201's cells.
        order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch: as ``DARTS`` (architect.py:
            first order, Adam 3e-4 with betas (0.5, 0.999) and weight decay 1e-3).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, reg_lambda: float = 0.125, epsilon_0: float = 1e-4,
                 cell_types: Sequence[str] | None = None, order: int = 1, arch_lr: float = 3e-4,
                 arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
                 fd_radius: float = 0.01, arch_start_epoch: int = 0, **early_stop: Any):
        if reg_lambda < 0 or not epsilon_0 > 0:
            raise ValueError(f"Lambda-DARTS needs reg_lambda >= 0 and epsilon_0 > 0, got strategy.reg_lambda="
                             f"{reg_lambda!r}, strategy.epsilon_0={epsilon_0!r}")
        aligned = tuple(supernet.cell_types[:1] if cell_types is None else cell_types)
        unknown = [t for t in aligned if t not in supernet.cell_types]
        if unknown or not aligned:
            raise ValueError(f"strategy.cell_types={list(aligned)} is not valid; choose among this space's cell types "
                             f"{list(supernet.cell_types)} (or null for the first)")
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch,
                         **early_stop)
        self.reg_lambda, self.epsilon_0, self.aligned = reg_lambda, epsilon_0, aligned
        self.strength = 0.0  # lambda_t
        self.correlation: torch.Tensor | float = float("nan")  # R of the last weight step (mean over aligned types)
        self._batch: Batch | None = None
        self._mixing: dict[str, Mixing] = {}
        self._cells: list[tuple[str, torch.Tensor]] = []  # (cell type, its copy of the weights), in forward order
        self._warned = False

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """lambda_t = lambda * epoch / (epochs - 1) (train_search.py ``model.lambda_``)."""
        super().epoch_start(epoch, epochs)
        self.strength = self.reg_lambda * epoch / max(epochs - 1, 1)

    def weight_mixing(self, train: Batch) -> dict[str, Mixing]:
        """DARTS's weights, each cell mixing with its own copy (a leaf, whose gradient is that cell's g_l)."""
        self._batch, self._cells = train, []
        self._mixing = super().weight_mixing(train)
        return {t: replace(m, per_cell=partial(self._record, t)) for t, m in self._mixing.items()}

    def _record(self, t: str, m: Mixing) -> Mixing:
        """A cell of type t mixes with its own copy of the weights [E, K], recorded."""
        copy = m.weights.detach().clone().requires_grad_(True)  # [E, K]
        self._cells.append((t, copy))
        return replace(m, weights=copy, per_cell=None)

    def weight_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, plus a term of value 0 whose gradient is -lambda_t grad_w R (``regulariser_gradient``)."""
        loss = super().weight_loss(logits, y)
        groups = {t: [c for u, c in self._cells if u == t] for t in self.aligned}
        groups = {t: cells for t, cells in groups.items() if len(cells) > 1}
        if not groups:
            if self._cells and not self._warned:
                log.warning("Lambda-DARTS: no aligned cell type %s has two cells; the weight step is DARTS's",
                            list(self.aligned))
                self._warned = True
            return loss
        grads = torch.autograd.grad(loss, [c for cells in groups.values() for c in cells], retain_graph=True)
        layer_grads, start = {}, 0
        for t, cells in groups.items():
            layer_grads[t], start = list(grads[start:start + len(cells)]), start + len(cells)
        self.correlation = torch.stack([alignment(g).detach() for g in layer_grads.values()]).mean()
        if self.strength == 0:
            return loss
        weights = [p for p in self.supernet.weight_parameters() if p.requires_grad]
        reg = self.regulariser_gradient(layer_grads, weights)
        return loss + self.strength * sum((r * (w - w.detach())).sum() for r, w in zip(reg, weights) if r is not None)

    def regulariser_gradient(self, layer_grads: dict[str, list[torch.Tensor]],
                             weights: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """(f - b) / (2 eps) ~ -grad_w R for ``weights``, from two passes on the weight step's batch with each aligned
        cell's weights moved by -/+ eps p_l (sota/cnn/model_search.py ``get_perturbations``, ``get_reg_grads``)."""
        p = {t: alignment_gradient(g) for t, g in layer_grads.items()}
        eps = self.epsilon_0 / torch.cat([q.flatten() for qs in p.values() for q in qs]).norm()
        f = self._perturbed_gradient(p, -eps, weights)
        b = self._perturbed_gradient(p, eps, weights)
        return [None if fi is None or bi is None else (fi - bi) / (2 * eps) for fi, bi in zip(f, b)]

    def _perturbed_gradient(self, p: dict[str, list[torch.Tensor]], step: torch.Tensor,
                            weights: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
        """grad_w L_train(w, A + step * p) on the weight step's batch: the k-th aligned cell of a type moves along
        the k-th p of that type, the other cells keep A."""
        seen = {t: 0 for t in self._mixing}

        def shift(t: str, m: Mixing) -> Mixing:
            k, seen[t] = seen[t], seen[t] + 1
            return replace(m, weights=m.weights + step * p[t][k] if t in p else m.weights, per_cell=None)

        x, y = self._batch
        logits = self.supernet(x, {t: replace(m, per_cell=partial(shift, t)) for t, m in self._mixing.items()})
        return torch.autograd.grad(super().weight_loss(logits, y), weights, allow_unused=True)

    def scalars(self) -> dict[str, Any]:
        """DARTS's entropies, lambda_t and the last weight step's layer alignment R."""
        return {**super().scalars(), "lambda/strength": self.strength, "lambda/alignment": self.correlation}
