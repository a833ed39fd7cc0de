"""The DARTS search network (cnn/model_search.py ``Network``): 8 cells of 4 intermediate nodes, mixed ops on all 14 edges.

A cell has 2 input nodes (the outputs of the two previous cells), 4 intermediate nodes, an edge
from every earlier node to each intermediate node (2+3+4+5 = 14 edges) and outputs the
concatenation of the 4 intermediate nodes. The supernet stacks ``layers`` cells (16 initial channels)
with reduction cells at layers//3 and 2*layers//3, stem multiplier 3.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from darts.ops import FactorizedReduce, ReLUConvBN
from darts.context import Context
from darts.mixed_op import auxiliary_skip, mixed_op
from darts.supernet import CellDAG, Mixing, OpSet, Supernet, SupernetOptions
from search_spaces.darts.ops import SEARCH_OPS
from search_spaces.darts.op_sets import OP_SETS

STEPS = 4  # intermediate nodes per cell
MULTIPLIER = 4  # how many of the last nodes are concatenated into the cell output


class SearchCell(nn.Module):
    """A DARTS search cell: preprocess both inputs, 14 mixed edges (edge e searching ``primitives[e]``), concat of
    the 4 nodes; what it recomputes in backward as ``context`` says (``CellDAG``, ``darts.checkpointing``)."""

    def __init__(self, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 primitives: tuple[tuple[str, ...], ...], options: SupernetOptions = SupernetOptions(),
                 context: Context = Context()):
        super().__init__()
        self.reduction = reduction
        # model_search.py Cell: FactorizedReduce after a reduction, else a 1x1 ReLUConvBN
        self.preprocess0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        stride = lambda i: 2 if reduction and i < 2 else 1  # noqa: E731  (the edges from the two inputs reduce)
        edge = lambda i, j: sum(range(2, j + 2)) + i  # noqa: E731  (edges ordered by node, then input)
        self.dag = CellDAG(2, STEPS, lambda i, j: mixed_op(C, stride(i), primitives[edge(i, j)], SEARCH_OPS,
                                                          options.partial_channels, context),
                           (lambda i, j: auxiliary_skip(C, stride(i))) if options.auxiliary_skip else None,
                           context.checkpoint_cells)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        """(B, C_pp, H', W'), (B, C_p, H, W) -> (B, 4C, H/r, W/r)."""
        states = self.dag([self.preprocess0(s0), self.preprocess1(s1)], mixing)
        return torch.cat(states[-MULTIPLIER:], dim=1)


class DartsSupernet(Supernet):
    """The DARTS search network (cnn/model_search.py Network) with alphas per cell type; its edges search ``ops``
    (RobustDARTS src/search/model_search.py builds each edge's MixedOp from its own list the same way); its mixed
    ops as ``options`` asks (``darts.supernet.SupernetOptions``)."""

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, ops: OpSet = OP_SETS["darts"],
                 stem_multiplier: int = 3, context: Context = Context(), options: SupernetOptions = SupernetOptions()):
        super().__init__(ops, 2, STEPS, context, options)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(C_pp, C_p, C_curr, reduction, reduction_prev,
                                         ops.edges["reduce" if reduction else "normal"], options, context))
            reduction_prev = reduction
            C_pp, C_p = C_p, MULTIPLIER * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, mixing["reduce" if cell.reduction else "normal"])
        return self.classifier(self.global_pooling(s1).flatten(1))


def build_supernet(init_channels: int = 16, layers: int = 8, num_classes: int = 10,
                   options: SupernetOptions = SupernetOptions(), context: Context = Context()) -> DartsSupernet:
    """The DARTS supernet; defaults are the paper's search setting (sec. 3.1.1: 8 cells, 16 channels)."""
    return context.place(DartsSupernet(init_channels, num_classes, layers, context=context, options=options))
