"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020, sec. 2; code: D-X-Y/AutoDL-Projects).

A cell is a DAG of 4 nodes: node 0 is the cell input and node i (1..3) sums one op applied to each
earlier node, so each of the 6 edges picks one of 5 ops (5^6 = 15,625 cells); node 3 is the output.
The network (lib/models/cell_infers/tiny_network.py TinyNetwork) is a 3x3 conv stem, three stages of
N cells at C, 2C and 4C channels joined by stride-2 residual blocks, then BN-ReLU, global pooling
and a linear classifier. The genotype and its benchmark string are in ``search_spaces.nb201_genotype``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from darts.ops import Identity, Zero
from darts.supernet import CellDAG, MixedOp, Mixing, Supernet
from search_spaces.base import SearchSpace, randint
from search_spaces.nb201_genotype import (EDGES, NUM_EDGES, NUM_NODES, PRIMITIVES, Arch, NB201Genotype, as_genotype,
                                         format_arch, parse_arch)

class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d -> BatchNorm2d, as NB201 cell_operations.py ReLUConvBN (attribute ``op``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            # AutoDL-Projects cell_operations.py since the NATS-Bench update: bias=not affine (the
            # ICLR-2020 file had bias=False; cf. NASLib PR #92). Discrete nets (affine) are unaffected.
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        return self.op(x)


def _skip_connect(stride: int) -> nn.Module:
    """Identity: NB201 cells never change resolution or width (their FactorizedReduce is unused)."""
    if stride != 1:
        raise ValueError(f"NB201 cell ops run at stride 1, got stride={stride}")
    return Identity()


OpFactory = Callable[[int, int, bool], nn.Module]


def nb201_ops(track_running_stats: bool = True) -> dict[str, OpFactory]:
    """The 5 NB201 ops as name -> factory(C, stride, affine), for ``MixedOp(ops=...)``.

    cell_operations.py OPS with C_in == C_out: `avg_pool_3x3` is POOLING without its preprocess
    conv and without a BN after it (so MixedOp needs ``pool_bn=False``).
    """
    t = track_running_stats
    return {
        "none": lambda C, stride, affine: Zero(stride),
        "skip_connect": lambda C, stride, affine: _skip_connect(stride),
        "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine, t),
        "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine, t),
        "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    }


OPS = nb201_ops()  # the discrete network's ops (InferCell: affine, tracked BN)


class ResNetBasicblock(nn.Module):
    """The stride-2 residual block between stages (cell_operations.py ResNetBasicblock, stride 2)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                        nn.Conv2d(C_in, C_out, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _stages(C: int, N: int, make_cell: Callable[[int], nn.Module]) -> nn.ModuleList:
    """tiny_network.py: N cells at C, a block to 2C, N cells at 2C, a block to 4C, N cells at 4C."""
    if C < 1 or N < 1:
        raise ValueError(f"C and N must be positive integers, got C={C}, N={N}")
    cells = nn.ModuleList()
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage:
            cells.append(ResNetBasicblock(width // 2, width))
        cells.extend(make_cell(width) for _ in range(N))
    return cells


def _add_skeleton(net: nn.Module, C: int, N: int, num_classes: int, make_cell: Callable[[int], nn.Module]) -> None:
    """tiny_network.py around the cells: a 3x3 conv + BN stem; BN-ReLU, global pooling, classifier.

    Attribute names are the reference's (stem, cells, lastact, global_pooling, classifier).
    """
    net.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
    net.cells = _stages(C, N, make_cell)
    net.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
    net.global_pooling = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(4 * C, num_classes)


def _head(net: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H/4, W/4) -> (B, num_classes) through the skeleton's lastact, pooling, classifier."""
    return net.classifier(net.global_pooling(net.lastact(h)).flatten(1))


class InferCell(nn.Module):
    """A discrete NB201 cell (cell_infers/cells.py InferCell): one op per edge, node 3 is the output.

    ``layers`` holds all 6 edge ops in edge order, as the reference, so state_dict keys match it;
    `none` edges are skipped in forward since they contribute exactly zero.
    """

    def __init__(self, genotype: NB201Genotype, C: int):
        super().__init__()
        self.genotype = genotype
        self.layers = nn.ModuleList(OPS[op](C, 1, True) for op in genotype.ops)
        # per node, the (edge, source) pairs whose op is not `none`
        self._inputs = [[(e, j) for e, (dst, j) in enumerate(EDGES) if dst == i and genotype.ops[e] != "none"]
                        for i in range(1, NUM_NODES + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        nodes = [x]
        for inputs in self._inputs:
            terms = [self.layers[e](nodes[j]) for e, j in inputs]  # each (B, C, H, W)
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class TinyNetwork(nn.Module):
    """The NB201 network of one cell (tiny_network.py TinyNetwork); forward returns logits only.

    The reference returns (pooled features, logits); here only the logits, like every network of
    this framework. Module names match the reference, so its checkpoints load.
    """

    def __init__(self, genotype: Arch, C: int = 16, N: int = 5, num_classes: int = 10):
        super().__init__()
        self.genotype = as_genotype(genotype)
        _add_skeleton(self, C, N, num_classes, lambda width: InferCell(self.genotype, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        h = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            h = cell(h)  # (B, C', H', W')
        return _head(self, h)


class SearchCell(nn.Module):
    """An NB201 search cell: a mixed op on each of the 6 edges (search_cells.py NAS201SearchCell)."""

    def __init__(self, C: int, partial_channels: int = 1, track_running_stats: bool = False):
        super().__init__()
        ops = nb201_ops(track_running_stats)
        self.dag = CellDAG(1, NUM_NODES, lambda i, j: MixedOp(C, 1, PRIMITIVES, partial_channels, ops=ops, pool_bn=False))

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): node 3 of the DAG."""
        return self.dag([x], mixing)[-1]


class NB201Supernet(Supernet):
    """The NB201 weight-sharing network (search_model_darts.py TinyNetworkDarts) with alphas [6, 5].

    Search cells use affine-free BN, and by default batch statistics only (track_running_stats=False):
    the defaults of NATS-Bench exps/NATS-algos/search-cell.py (--affine 0 --track_running_stats 0),
    the NB201 authors' recommended BN=0 setting (AutoDL-Projects issue #70, NB201 appendix / Table 5).
    The residual blocks, stem and head keep their default (affine, tracked) BN, as the reference.
    """

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, partial_channels: int = 1,
                 track_running_stats: bool = False):
        super().__init__(("cell",), NUM_EDGES, PRIMITIVES)
        _add_skeleton(self, C, N, num_classes, lambda width: SearchCell(width, partial_channels, track_running_stats))

    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) with ``mixing["cell"]`` on every search cell."""
        if "cell" not in mixing:
            raise ValueError(f"NB201 mixing needs the cell type 'cell', got {sorted(mixing)}")
        m = mixing["cell"]
        h = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            h = cell(h, m) if isinstance(cell, SearchCell) else cell(h)  # (B, C', H', W')
        return _head(self, h)  # (B, num_classes)


def build_network(arch: Arch, C: int = 16, N: int = 5, num_classes: int = 10) -> TinyNetwork:
    """The discrete NB201 network of ``arch`` (string or genotype); benchmark size C=16, N=5."""
    return TinyNetwork(arch, C, N, num_classes)


def build_supernet(C: int = 16, N: int = 5, num_classes: int = 10, partial_channels: int = 1,
                   track_running_stats: bool = False) -> NB201Supernet:
    """The NB201 supernet; defaults are the benchmark's search setting (C=16, N=5)."""
    return NB201Supernet(C, N, num_classes, partial_channels, track_running_stats)


class NB201Space(SearchSpace):
    """The NB201 space; ``init_channels``/``cells_per_stage`` size the supernet and networks."""

    primitives = PRIMITIVES
    cell_types = ("cell",)
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 16, cells_per_stage: int = 5, track_running_stats: bool = False,
                 partial_channels: int = 1):
        self.init_channels = init_channels
        self.cells_per_stage = cells_per_stage
        self.track_running_stats = track_running_stats
        self.partial_channels = partial_channels

    def build_supernet(self, num_classes: int) -> NB201Supernet:
        """The supernet at this space's size (partial channels K for PC-DARTS)."""
        return NB201Supernet(self.init_channels, self.cells_per_stage, num_classes, self.partial_channels,
                             self.track_running_stats)

    def build_network(self, genotype: Arch, num_classes: int) -> TinyNetwork:
        """TinyNetwork of the genotype at this space's size, returning logits."""
        return TinyNetwork(genotype, self.init_channels, self.cells_per_stage, num_classes)

    def derive(self, weights: dict[str, torch.Tensor]) -> NB201Genotype:
        """Per edge, the op of largest weight among all 5, `none` included (search_model_darts.py genotype)."""
        w = weights["cell"]
        if tuple(w.shape) != (NUM_EDGES, len(PRIMITIVES)):
            raise ValueError(f"NB201 weights must be [{NUM_EDGES}, {len(PRIMITIVES)}], got {list(w.shape)}")
        best = w.detach().float().cpu().argmax(dim=-1)  # [E]
        return NB201Genotype.from_ops([PRIMITIVES[int(k)] for k in best])

    def to_text(self, genotype: Arch) -> str:
        """The benchmark string."""
        return format_arch(as_genotype(genotype))

    def parse(self, text: str) -> NB201Genotype:
        """Parse a benchmark string."""
        return parse_arch(text)

    def to_json(self, genotype: Arch) -> dict:
        """``{"arch": <benchmark string>}``."""
        return {"arch": self.to_text(genotype)}

    def sample(self, generator: torch.Generator) -> NB201Genotype:
        """An op per edge, uniformly (each of the 15,625 cells equally likely)."""
        return NB201Genotype.from_ops([PRIMITIVES[randint(generator, len(PRIMITIVES))] for _ in range(NUM_EDGES)])

    def mutate(self, genotype: Arch, generator: torch.Generator) -> NB201Genotype:
        """One edge gets a different op, as NB201 exps/algos/R_EA.py mutate_arch_func.

        Like the reference, a node is drawn uniformly, then one of its input edges, then a
        different op uniformly (so node 1's single edge is picked more often than node 3's).
        """
        ops = list(as_genotype(genotype).ops)
        node = 1 + randint(generator, NUM_NODES)
        e = EDGES.index((node, randint(generator, node)))
        others = [op for op in PRIMITIVES if op != ops[e]]
        ops[e] = others[randint(generator, len(others))]
        return NB201Genotype.from_ops(ops)

    def one_hot(self, genotype: Arch) -> dict[str, Mixing]:
        """The genotype's op index on each edge."""
        return {"cell": Mixing(index=[PRIMITIVES.index(op) for op in as_genotype(genotype).ops])}
