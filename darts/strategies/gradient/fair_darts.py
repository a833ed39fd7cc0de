"""Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture Search (Chu et al., ECCV 2020).

Two changes to DARTS (official code: xiaomi-automl/FairDARTS fairdarts/):
  * collaborative competition: each op's mixing weight is its own sigmoid(alpha) instead of a softmax over the
    edge, so ops do not compete for one unit of weight (model_search.py ``forward``);
  * the zero-one loss pushes every sigmoid weight towards 0 or 1, closing the discretisation gap:
        L_01 = -1/N sum_i (sigmoid(alpha_i) - 0.5)^2        (separate_loss.py ``ConvSeparateLoss``)
    over the N weights of both cell types, added to the arch objective with weight w01:
    L_val + w01 * L_01 (architect.py ``step``; no warm-up or schedule).
Derivation (utils.py ``parse``, ``threshold_sparse``, op_threshold 0.85): per node, the two input edges whose best
op is strongest (DARTS's rule on the sigmoid weights), each kept only if that op's sigmoid weight is at least the
threshold; a node left without inputs is isolated and ignored (README), as are the edges reading it. In a genotype
of the DARTS form (two (op, input) pairs per node and a concat per cell type) a dropped edge is the pair
('none', input), which adds zeros, and an isolated node leaves the concat; when every node of a cell is isolated the
concat is kept whole (a cell of zeros, which the official code cannot build). Genotypes of other forms (NB201, the
toy space) are the space's own rule on the sigmoid weights: the paper defines its threshold on the DARTS cell only.
"""
from __future__ import annotations

from typing import Any

import torch

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet
from search_spaces.base import SearchSpace

Pair = tuple[str, int]


def sparse_pairs(pairs: list[Pair], weights: torch.Tensor, sizes: list[int], names: tuple[tuple[str, ...], ...],
                 threshold: float) -> tuple[list[Pair], set[int]]:
    """``threshold_sparse`` on one DARTS-form cell: each pair (op, input) of node k // 2 stays if its op's weight in
    weights [E, K] (edges in CellDAG order, ``sizes`` per node, ``names[e]`` the ops of edge e) is >= threshold and its input is not isolated, else
    becomes ('none', input); returns the pairs and the isolated states (nodes left with two `none` pairs)."""
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    isolated: set[int] = set()
    out: list[Pair] = []
    for k, (op, src) in enumerate(pairs):
        node = k // 2
        e = starts[node] + src
        weight = float(weights[e, names[e].index(op)])
        kept = op != "none" and src not in isolated and weight >= threshold
        out.append((op, src) if kept else ("none", src))
        if k % 2 and out[-1][0] == out[-2][0] == "none":
            isolated.add(sizes[0] + node)  # node j is state num_inputs + j
    return out, isolated


class FairDARTS(DARTS):
    """Sigmoid mixing weights, the zero-one loss in the arch objective and thresholded derivation (module docstring).

    Args:
        w01: weight of the zero-one loss (train_search.py --aux_loss_weight 10).
        op_threshold: sigmoid weight an op needs to be kept (train_search.py --op_threshold 0.85, the paper's sigma).
        order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch: as ``DARTS`` (train_search.py:
            Adam 3e-3, weight decay 1e-3; architect.py: betas (--arch_lr_gamma 0.9, 0.999), a first-order step on
            every step from epoch 0).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, w01: float = 10.0, op_threshold: float = 0.85,
                 order: int = 1, arch_lr: float = 3e-3,
                 arch_betas: tuple[float, float] = (0.9, 0.999), arch_weight_decay: float = 1e-3,
                 fd_radius: float = 0.01, arch_start_epoch: int = 0, **early_stop: Any):
        if w01 < 0:
            raise ValueError(f"strategy.w01={w01!r} must be >= 0")
        if not 0 < op_threshold < 1:
            raise ValueError(f"strategy.op_threshold={op_threshold!r} must be in (0, 1) (a sigmoid weight)")
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch,
                         **early_stop)
        self.w01, self.op_threshold = w01, op_threshold
        with torch.no_grad():  # model_search.py _initialize_alphas: torch.zeros (every sigmoid weight 0.5)
            for a in self.arch_parameters():
                a.zero_()

    def sigmoids(self) -> dict[str, torch.Tensor]:
        """sigmoid(alphas) [E, K] per cell type (differentiable)."""
        return {t: torch.sigmoid(self.supernet.alphas[t]) for t in self.supernet.cell_types}

    def mixing(self) -> dict[str, Mixing]:
        """sigmoid(alphas) [E, K] per cell type."""
        return {t: Mixing(w) for t, w in self.sigmoids().items()}

    def zero_one_loss(self) -> torch.Tensor:
        """L_01 = -mean over both cell types' weights of (sigmoid(alpha) - 0.5)^2 (separate_loss.py)."""
        w = torch.cat([s.flatten() for s in self.sigmoids().values()])  # [N]
        return -(w - 0.5).square().mean()

    def arch_penalty(self) -> torch.Tensor:
        """w01 * L_01, added to L_val in the arch step (architect.py ``step``: ConvSeparateLoss)."""
        return self.w01 * self.zero_one_loss()

    def genotype(self) -> Any:
        """The space's derivation on the sigmoid weights, then the threshold (``threshold_sparse``) where the genotype
        has the DARTS form (module docstring)."""
        weights = self.op_weights()
        genotype = self.space.derive(weights)
        if not all(hasattr(genotype, f"{t}_concat") for t in self.supernet.cell_types):
            return genotype
        sizes, fields = list(self.supernet.structure.node_inputs), {}
        for t in self.supernet.cell_types:
            w = weights[t].float().cpu()  # [E, K]
            fields[t], isolated = sparse_pairs(list(getattr(genotype, t)), w, sizes, self.supernet.ops.edges[t],
                                               self.op_threshold)
            concat = [i for i in getattr(genotype, f"{t}_concat") if i not in isolated]
            if isolated and concat:
                fields[f"{t}_concat"] = concat
        return genotype._replace(**fields)

    def scalars(self) -> dict[str, Any]:
        """L_01 and, per cell type, the fraction of sigmoid weights at or above the threshold."""
        out: dict[str, Any] = {"zero_one_loss": self.zero_one_loss().detach()}
        for t, s in self.sigmoids().items():
            out[f"above_threshold_{t}"] = (s.detach() >= self.op_threshold).float().mean()
        return out
