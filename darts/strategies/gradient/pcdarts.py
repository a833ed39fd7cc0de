"""PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search (Xu et al., ICLR 2020).

Two changes to DARTS (paper sec. 3.2, 3.3):
  * partial channel connections: only 1/K of each edge's input channels go through the mixed op, the
    rest bypass it, then a channel shuffle. That is how the mixed ops are built: the strategy asks the
    space for them (``supernet_options``: ``partial_channels`` K), the supernet computes them;
  * edge normalisation: each edge (i, j) has a parameter beta_{i,j}; node j sums its incoming edges
    weighted by a softmax over its incoming betas,  x_j = sum_i softmax(beta_{.,j})_i * f_{i,j}(x_i).
    Derivation multiplies each edge's op weights by that normalised beta before the DARTS rule.
Code: yuhuixu1993/PC-DARTS model_search.py (``Network.forward``, ``_initialize_alphas``, ``genotype``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet, SupernetOptions
from search_spaces.base import SearchSpace

PARTIAL_CHANNELS = 4  # model_search.py MixedOp: k = 4 (1/4 of the channels go through the ops)


def normalise_betas(betas: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Softmax of betas [E] over each node's incoming edges (model_search.py ``weights2``) -> [E]."""
    return torch.cat([F.softmax(b, dim=-1) for b in torch.split(betas, sizes)])


class PCDARTS(DARTS):
    """DARTS with edge normalisation betas (partial channels come from the supernet).

    Args:
        partial_channels: K, the supernet's partial channel groups (model_search.py: 4).
        order, arch_lr, arch_betas, arch_weight_decay, fd_radius: as ``DARTS``; Adam updates the alphas
            and the betas (PC-DARTS train_search.py: lr 6e-4, weight decay 1e-3; architect.py: (0.5, 0.999)).
        arch_start_epoch: weight-only warm-up epochs (train_search.py: ``if epoch >= 15``).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, partial_channels: int = PARTIAL_CHANNELS,
                 order: int = 1, arch_lr: float = 6e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_weight_decay: float = 1e-3, fd_radius: float = 0.01, arch_start_epoch: int = 15,
                 **early_stop: Any):
        if supernet.structure.partial_channels != partial_channels:
            raise ValueError(f"strategy.partial_channels={partial_channels} but the supernet was built with "
                             f"K={supernet.structure.partial_channels} (build it with PCDARTS.supernet_options)")
        self.node_sizes = list(supernet.structure.node_inputs)
        device = next(supernet.parameters()).device
        # model_search.py _initialize_alphas: betas = 1e-3 * randn(num_edges), one vector per cell type
        self.betas = {t: torch.nn.Parameter(1e-3 * torch.randn(supernet.num_edges, device=device))
                      for t in supernet.cell_types}
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay, fd_radius, arch_start_epoch,
                         **early_stop)

    @classmethod
    def supernet_options(cls, partial_channels: int = PARTIAL_CHANNELS, **settings: Any) -> SupernetOptions:
        """Mixed ops over 1/K of the channels."""
        return SupernetOptions(partial_channels=partial_channels)

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """The alphas [E, K] and betas [E] of every cell type."""
        return [*self.supernet.arch_parameters(), *(self.betas[t] for t in self.supernet.cell_types)]

    def edge_weights(self) -> dict[str, torch.Tensor]:
        """Normalised betas [E] per cell type (they sum to 1 over each node's incoming edges)."""
        return {t: normalise_betas(self.betas[t], self.node_sizes) for t in self.supernet.cell_types}

    def mixing(self) -> dict[str, Mixing]:
        """softmax(alphas) [E, K] per edge and the normalised betas [E] scaling each edge's output."""
        edges = self.edge_weights()
        return {t: Mixing(F.softmax(self.supernet.alphas[t], dim=-1), edge_weights=edges[t])
                for t in self.supernet.cell_types}

    def op_weights(self) -> dict[str, torch.Tensor]:
        """softmax(alphas) * normalised betas [E, K], detached: what model_search.py ``genotype`` ranks."""
        return {t: (m.weights * m.edge_weights[:, None]).detach() for t, m in self.mixing().items()}

    def scalars(self) -> dict[str, Any]:
        """Op-distribution entropy per cell type and every normalised beta (``beta_<cell type>/edgeNN``)."""
        out = {}
        for t, m in self.mixing().items():
            w = m.weights.detach()  # [E, K]
            out[f"entropy_{t}"] = -(w * w.clamp_min(1e-12).log()).sum(-1).mean()
            for e, b in enumerate(m.edge_weights.detach()):
                out[f"beta_{t}/edge{e:02d}"] = b
        return out

    def state_dict(self) -> dict[str, Any]:
        """DARTS's state and the betas."""
        return {**super().state_dict(), "betas": {t: b.detach().clone() for t, b in self.betas.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore DARTS's state and copy the betas in place (the arch optimizer keeps its references)."""
        super().load_state_dict(state)
        with torch.no_grad():
            for t, b in self.betas.items():
                b.copy_(state["betas"][t])
