"""The NAS-Bench-201 network of one cell (AutoDL-Projects lib/models/cell_infers/tiny_network.py TinyNetwork).

A 3x3 conv stem, three stages of N cells at C, 2C and 4C channels joined by stride-2 residual blocks,
then BN-ReLU, global pooling and a linear classifier. The supernet (``supernet.py``) shares the skeleton.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from search_spaces.nb201.genotype import EDGES, NUM_NODES, Arch, NB201Genotype, as_genotype
from search_spaces.nb201.ops import OPS, ResNetBasicblock


def stages(C: int, N: int, make_cell: Callable[[int], nn.Module]) -> nn.ModuleList:
    """tiny_network.py: N cells at C, a block to 2C, N cells at 2C, a block to 4C, N cells at 4C."""
    if C < 1 or N < 1:
        raise ValueError(f"C and N must be positive integers, got C={C}, N={N}")
    cells = nn.ModuleList()
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage:
            cells.append(ResNetBasicblock(width // 2, width))
        cells.extend(make_cell(width) for _ in range(N))
    return cells


def add_skeleton(net: nn.Module, C: int, N: int, num_classes: int, make_cell: Callable[[int], nn.Module]) -> None:
    """tiny_network.py around the cells: a 3x3 conv + BN stem; BN-ReLU, global pooling, classifier.

    Attribute names are the reference's (stem, cells, lastact, global_pooling, classifier).
    """
    net.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
    net.cells = stages(C, N, make_cell)
    net.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
    net.global_pooling = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(4 * C, num_classes)


def head(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H/4, W/4) -> (B, num_classes) through the skeleton's lastact, pooling, classifier."""
    return net.classifier(net.global_pooling(net.lastact(h)).flatten(1))


class InferCell(nn.Module):
    """A discrete NB201 cell (cell_infers/cells.py InferCell): one op per edge, node 3 is the output.

    ``layers`` holds all 6 edge ops in edge order, as the reference, so state_dict keys match it;
    `none` edges are skipped in forward since they contribute exactly zero. ``make_op(op, j)`` builds the op of an
    edge leaving node j (default: ``OPS[op](C, 1, True)``; the NATS size space's cells widen on the edges leaving
    node 0).
    """

    def __init__(self, genotype: NB201Genotype, C: int, make_op: Callable[[str, int], nn.Module] | None = None):
        super().__init__()
        self.genotype, self.out_dim = genotype, C
        make_op = make_op or (lambda op, j: OPS[op](C, 1, True))
        self.layers = nn.ModuleList(make_op(op, j) for op, (_, j) in zip(genotype.ops, EDGES))
        # per node, the (edge, source) pairs whose op is not `none`
        self._inputs = [[(e, j) for e, (dst, j) in enumerate(EDGES) if dst == i and genotype.ops[e] != "none"]
                        for i in range(1, NUM_NODES + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C, H, W)."""
        nodes = [x]
        for inputs in self._inputs:
            terms = [self.layers[e](nodes[j]) for e, j in inputs]  # each (B, C, H, W)
            nodes.append(sum(terms[1:], terms[0]) if terms else x.new_zeros((x.shape[0], self.out_dim, *x.shape[2:])))
        return nodes[-1]


class TinyNetwork(nn.Module):
    """The NB201 network of one cell (tiny_network.py TinyNetwork); forward returns logits only.

    The reference returns (pooled features, logits); here only the logits, like every network of
    this framework. Module names match the reference, so its checkpoints load.
    """

    def __init__(self, genotype: Arch, C: int = 16, N: int = 5, num_classes: int = 10):
        super().__init__()
        self.genotype = as_genotype(genotype)
        add_skeleton(self, C, N, num_classes, lambda width: InferCell(self.genotype, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        h = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            h = cell(h)  # (B, C', H', W')
        return head(self, h)


def build_network(arch: Arch, C: int = 16, N: int = 5, num_classes: int = 10) -> TinyNetwork:
    """The discrete NB201 network of ``arch`` (string or genotype); benchmark size C=16, N=5."""
    return TinyNetwork(arch, C, N, num_classes)
