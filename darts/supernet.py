"""Weight-sharing building blocks: the mixed op, the cell DAG and the supernet base.

The supernet owns the architecture parameters (so they checkpoint with it) but never interprets
them: its forward takes the per-edge mixing weights a strategy computed (``Mixing``). This is the
continuous relaxation of DARTS (Liu et al., ICLR 2019, eq. 2) with the softmax taken out, so that
GDAS, PC-DARTS, DrNAS and random single paths reuse the same network.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.ops import OPS


@dataclass
class Mixing:
    """Mixing weights of one cell type for one forward pass.

    Args:
        weights: [E, K] per-edge op weights (softmax, Dirichlet sample, straight-through one-hot).
        index: [E] when set, edge e computes only op ``index[e]`` (scaled by ``weights[e, index[e]]``
            when weights are given, so gradients still reach the arch parameters).
        edge_weights: [E] per-edge scale applied to each edge's output (PC-DARTS edge normalisation).
    """

    weights: torch.Tensor | None = None
    index: Sequence[int] | None = None
    edge_weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.weights is None and self.index is None:
            raise ValueError("Mixing needs soft weights, a hard index per edge, or both")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups (ShuffleNet; PC-DARTS model_search.py channel_shuffle)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """All candidate ops of one edge; output = sum_k w_k * op_k(x) (DARTS eq. 2).

    With ``partial_channels`` K > 1 only C/K channels go through the ops and the rest bypass them,
    followed by a channel shuffle (PC-DARTS, Xu et al., ICLR 2020, sec. 3.2).
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str], partial_channels: int = 1,
                 ops: Mapping[str, Callable[[int, int, bool], nn.Module]] = OPS, pool_bn: bool = True):
        super().__init__()
        if C % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide the channels C={C}")
        self.primitives = tuple(primitives)
        self.stride = stride
        self.k = partial_channels
        c = C // partial_channels
        self._ops = nn.ModuleList()
        for name in self.primitives:
            op = ops[name](c, stride, False)
            if pool_bn and "pool" in name:  # DARTS model_search.py: pools get an affine-free BN
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            self._ops.append(op)
        # `none` contributes exactly zero (value and gradient), so it is never computed.
        self._active = [i for i, name in enumerate(self.primitives) if name != "none"]

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None) -> torch.Tensor:
        """Mix the ops on x (B, C, H, W); weights [K] or None; index picks a single op."""
        if self.k == 1:
            return self._mix(x, weights, index)
        c = x.shape[1] // self.k
        part, rest = x[:, :c], x[:, c:]  # (B, C/K, H, W), (B, C - C/K, H, W)
        if self.stride == 2:  # PC-DARTS: the bypassed channels are max-pooled at stride 2
            rest = F.max_pool2d(rest, 2, 2)
        return channel_shuffle(torch.cat([self._mix(part, weights, index), rest], dim=1), self.k)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None) -> torch.Tensor:
        if index is not None:
            out = self._ops[index](x)
            if weights is None:
                return out
            # NB201 search_cells.py forward_gdas also adds the other ops' (zero) weights to the sum:
            # their value is dropped here, their gradient path d/dw_k = sum(dL/dout) is kept.
            rest = weights.sum() - weights[index]
            return weights[index] * out + (rest - rest.detach())
        out = None
        for i in self._active:
            y = weights[i] * self._ops[i](x)
            out = y if out is None else out + y
        if out is None:  # every candidate is `none`
            return self._ops[0](x)
        return out


class CellDAG(nn.Module):
    """The edges of a cell: node j = sum over earlier states i of edge (i, j) applied to state i.

    Edges are ordered by destination node, then source, as in DARTS model_search.py and the
    NAS-Bench-201 cells, so row e of a [E, K] weight matrix is edge e.
    """

    def __init__(self, num_inputs: int, num_nodes: int, make_edge: Callable[[int, int], nn.Module]):
        super().__init__()
        self.num_inputs = num_inputs
        self.num_nodes = num_nodes
        self.edges = nn.ModuleList()
        self.sources: list[int] = []
        for j in range(num_nodes):
            for i in range(num_inputs + j):
                self.edges.append(make_edge(i, j))
                self.sources.append(i)

    def forward(self, inputs: list[torch.Tensor], mixing: Mixing) -> list[torch.Tensor]:
        """Return all states (inputs, then the num_nodes intermediate nodes)."""
        states = list(inputs)
        e = 0
        for _ in range(self.num_nodes):
            node = None
            for s in states:
                w = None if mixing.weights is None else mixing.weights[e]
                y = self.edges[e](s, w, None if mixing.index is None else mixing.index[e])
                if mixing.edge_weights is not None:
                    y = mixing.edge_weights[e] * y
                node = y if node is None else node + y
                e += 1
            states.append(node)
        return states


class Supernet(nn.Module, ABC):
    """Base of every supernet: owns alphas [E, K] per cell type; subclasses implement ``logits``."""

    def __init__(self, cell_types: Sequence[str], num_edges: int, primitives: Sequence[str]):
        super().__init__()
        self.cell_types = tuple(cell_types)
        self.primitives = tuple(primitives)
        self.num_edges = num_edges
        # DARTS model_search.py _initialize_alphas: 1e-3 * randn
        self.alphas = nn.ParameterDict(
            {t: nn.Parameter(1e-3 * torch.randn(num_edges, len(self.primitives))) for t in self.cell_types}
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alphas), one [E, K] tensor per cell type."""
        return [self.alphas[t] for t in self.cell_types]

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights: every parameter that is not an alpha."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def forward(self, x: torch.Tensor, mixing: dict[str, Mixing] | None = None) -> torch.Tensor:
        """Logits for x (B, 3, H, W); without mixing, the DARTS relaxation softmax(alphas)."""
        if mixing is None:
            mixing = {t: Mixing(F.softmax(self.alphas[t], dim=-1)) for t in self.cell_types}
        return self.logits(x, mixing)

    @abstractmethod
    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """Forward pass with the given mixing weights per cell type."""
