"""The NAS-Bench-201 weight-sharing network (AutoDL-Projects search_model_darts.py TinyNetworkDarts)."""
from __future__ import annotations

import torch
import torch.nn as nn

from darts.context import Context
from darts.mixed_op import auxiliary_skip, mixed_op
from darts.supernet import CellDAG, Mixing, OpSet, Supernet, SupernetOptions
from search_spaces.nb201.genotype import NUM_EDGES, NUM_NODES, PRIMITIVES
from search_spaces.nb201.network import add_skeleton, head
from search_spaces.nb201.ops import nb201_ops


class SearchCell(nn.Module):
    """An NB201 search cell: a mixed op on each of the 6 edges (search_cells.py NAS201SearchCell); what it
    recomputes in backward as ``context`` says (``CellDAG``, ``darts.checkpointing``)."""

    def __init__(self, C: int, options: SupernetOptions = SupernetOptions(), track_running_stats: bool = False,
                 context: Context = Context()):
        super().__init__()
        ops = nb201_ops(track_running_stats)
        make_edge = lambda i, j: mixed_op(C, 1, PRIMITIVES, ops, options.partial_channels, context)  # noqa: E731
        self.dag = CellDAG(1, NUM_NODES, make_edge,
                           (lambda i, j: auxiliary_skip(C, 1)) if options.auxiliary_skip else None,
                           context.checkpoint_cells)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): node 3 of the DAG."""
        return self.dag([x], mixing)[-1]


class NB201Supernet(Supernet):
    """The NB201 weight-sharing network (search_model_darts.py TinyNetworkDarts) with alphas [6, 5].

    Search cells use affine-free BN, and by default batch statistics only (track_running_stats=False):
    the defaults of NATS-Bench exps/NATS-algos/search-cell.py (--affine 0 --track_running_stats 0),
    the NB201 authors' recommended BN=0 setting (AutoDL-Projects issue #70, NB201 appendix / Table 5).
    The residual blocks, stem and head keep their default (affine, tracked) BN, as the reference.
    DARTS-'s auxiliary skips (``options``) are all stride 1 here: the identity, no parameters.
    """

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, track_running_stats: bool = False,
                 context: Context = Context(), options: SupernetOptions = SupernetOptions()):
        super().__init__(OpSet.uniform(("cell",), NUM_EDGES, PRIMITIVES), 1, NUM_NODES, context, options)
        add_skeleton(self, C, N, num_classes,
                     lambda width: SearchCell(width, options, track_running_stats, context))

    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) with ``mixing["cell"]`` on every search cell."""
        if "cell" not in mixing:
            raise ValueError(f"NB201 mixing needs the cell type 'cell', got {sorted(mixing)}")
        m = mixing["cell"]
        h = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            h = cell(h, m) if isinstance(cell, SearchCell) else cell(h)  # (B, C', H', W')
        return head(self, h)  # (B, num_classes)


def build_supernet(C: int = 16, N: int = 5, num_classes: int = 10, track_running_stats: bool = False,
                   context: Context = Context(), options: SupernetOptions = SupernetOptions()) -> NB201Supernet:
    """The NB201 supernet; defaults are the benchmark's search setting (C=16, N=5)."""
    return context.place(NB201Supernet(C, N, num_classes, track_running_stats, context, options))
