"""A toy search space: one cell of two nodes and two ops, small enough to run every strategy in a test.

It is also the worked example of adding a space (README, "Extending"): everything a space owns fits
here. The network is a 3x3 conv stem with BN, one cell, global pooling and a classifier. The cell's
node 0 is the stem output; node 1 = op(node 0); node 2 = op(node 0) + op(node 1); the cell outputs
node 2. Each of the 3 edges is `skip_connect` or `conv_3x3` (ReLU-Conv-BN), so the space holds
2^3 = 8 cells. A genotype is the op of each edge, written ``skip_connect|conv_3x3|conv_3x3``.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn

from darts.diagrams import CellGraph
from darts.ops import Identity, ReLUConvBN
from darts.context import Context
from darts.mixed_op import auxiliary_skip, mixed_op
from darts.supernet import CellDAG, Mixing, OpSet, Supernet, SupernetOptions
from darts.settings import integer
from search_spaces.base import SearchSpace, randint

PRIMITIVES = ("skip_connect", "conv_3x3")
NUM_NODES = 2
NUM_EDGES = 3  # 1<-0, 2<-0, 2<-1
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "skip_connect": lambda C, stride, affine: Identity(),
    "conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine=affine),
}


class ToyGenotype(tuple):
    """The op of each edge, in edge order; immutable and validated when built."""

    def __new__(cls, ops: Iterable[str]) -> ToyGenotype:
        ops = tuple(ops)
        if len(ops) != NUM_EDGES or any(op not in PRIMITIVES for op in ops):
            raise ValueError(f"a toy genotype is {NUM_EDGES} ops of {PRIMITIVES}, got {ops}")
        return super().__new__(cls, ops)

    def __str__(self) -> str:
        return "|".join(self)


class _Skeleton(nn.Module):
    """Stem, one cell, global pooling and classifier; the cell is what differs between the two networks."""

    def __init__(self, C: int, num_classes: int, cell: nn.Module):
        super().__init__()
        if C < 1:
            raise ValueError(f"init_channels={C} must be >= 1")
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cell = cell
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes)."""
        return self.classifier(self.global_pooling(h).flatten(1))


class ToyNetwork(_Skeleton):
    """The discrete network of one toy genotype; forward returns logits."""

    def __init__(self, genotype: ToyGenotype, C: int = 8, num_classes: int = 10):
        super().__init__(C, num_classes, nn.ModuleList(OPS[op](C, 1, True) for op in genotype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        s0 = self.stem(x)  # (B, C, H, W)
        s1 = self.cell[0](s0)
        return self.head(self.cell[1](s0) + self.cell[2](s1))


class ToySupernet(Supernet):
    """The weight-sharing toy network: a mixed op on each of the 3 edges, alphas [3, 2] (DARTS-'s auxiliary skips,
    when ``options`` asks, are the identity on these stride-1 edges)."""

    def __init__(self, C: int = 8, num_classes: int = 10, context: Context = Context(),
                 options: SupernetOptions = SupernetOptions()):
        super().__init__(OpSet.uniform(("cell",), NUM_EDGES, PRIMITIVES), 1, NUM_NODES, context, options)
        make_edge = lambda i, j: mixed_op(C, 1, PRIMITIVES, OPS, options.partial_channels, context)  # noqa: E731
        dag = CellDAG(1, NUM_NODES, make_edge,
                      (lambda i, j: auxiliary_skip(C, 1)) if options.auxiliary_skip else None, context.checkpoint_cells)
        self.net = _Skeleton(C, num_classes, dag)

    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) with ``mixing["cell"]`` on the cell."""
        return self.net.head(self.net.cell([self.net.stem(x)], mixing["cell"])[-1])


class ToySpace(SearchSpace):
    """The toy space; ``init_channels`` sizes its networks."""

    primitives = PRIMITIVES
    cell_types = ("cell",)
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 8):
        integer("model.init_channels", init_channels, 1)
        self.init_channels = init_channels

    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> ToySupernet:
        """The supernet at this space's size."""
        return ToySupernet(self.init_channels, num_classes, context, options)

    def network_sizes(self) -> dict[str, int]:
        """ToyNetwork's: C."""
        return {"C": self.init_channels}

    def build_network(self, genotype: ToyGenotype, num_classes: int) -> ToyNetwork:
        """The discrete network at this space's size."""
        return ToyNetwork(genotype, self.init_channels, num_classes)

    def derive(self, weights: dict[str, torch.Tensor]) -> ToyGenotype:
        """The op of largest weight on each edge."""
        return ToyGenotype(PRIMITIVES[int(k)] for k in weights["cell"].detach().argmax(dim=-1))

    def to_text(self, genotype: ToyGenotype) -> str:
        """``op|op|op``."""
        return str(ToyGenotype(genotype))

    def parse(self, text: str) -> ToyGenotype:
        """The genotype of ``op|op|op``."""
        return ToyGenotype(text.strip().split("|"))

    def to_json(self, genotype: ToyGenotype) -> dict:
        """``{"ops": [...]}``."""
        return {"ops": list(genotype)}

    def from_json(self, data: dict) -> ToyGenotype:
        """The genotype of ``{"ops": [...]}``."""
        if not isinstance(data, dict) or not isinstance(data.get("ops"), list):
            raise ValueError(f'a toy genotype JSON is {{"ops": [...]}}, got {str(data)[:80]}')
        return ToyGenotype(data["ops"])

    def sample(self, generator: torch.Generator) -> ToyGenotype:
        """An op per edge, uniformly."""
        return ToyGenotype(PRIMITIVES[randint(generator, len(PRIMITIVES))] for _ in range(NUM_EDGES))

    def mutate(self, genotype: ToyGenotype, generator: torch.Generator) -> ToyGenotype:
        """One edge gets the other op."""
        ops = list(genotype)
        e = randint(generator, NUM_EDGES)
        ops[e] = PRIMITIVES[1 - PRIMITIVES.index(ops[e])]
        return ToyGenotype(ops)

    def cell_graphs(self, genotype: ToyGenotype) -> dict[str, CellGraph]:
        """Node 0 the stem output, nodes 1 and 2, node 2 the output."""
        edges = tuple((src, dst, op) for (src, dst), op in zip((("0", "1"), ("0", "2"), ("1", "2")), genotype))
        return {"cell": CellGraph(("0",), ("1", "2"), edges)}

    def one_hot(self, genotype: ToyGenotype) -> dict[str, Mixing]:
        """The genotype's op index on each edge."""
        return {"cell": Mixing(index=[PRIMITIVES.index(op) for op in genotype])}
