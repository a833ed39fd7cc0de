"""The DARTS CNN search space (Liu et al., ICLR 2019, sec. 2.1 and 3.1; code: quark0/darts cnn/).

A cell has 2 input nodes (the outputs of the two previous cells), 4 intermediate nodes, an edge
from every earlier node to each intermediate node (2+3+4+5 = 14 edges) and outputs the
concatenation of the 4 intermediate nodes. The supernet stacks 8 cells (16 initial channels) with
reduction cells at layers//3 and 2*layers//3, stem multiplier 3, as cnn/model_search.py.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.genotype import Genotype, parse_genotype
from darts.network import NetworkCIFAR
from darts.ops import FactorizedReduce, ReLUConvBN
from darts.supernet import CellDAG, MixedOp, Mixing, Supernet
from search_spaces.base import SearchSpace, randint
from search_spaces.darts_genotypes import GENOTYPES

# cnn/genotypes.py, in the paper's order (index 0 is `none`)
PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
STEPS = 4  # intermediate nodes per cell
MULTIPLIER = 4  # how many of the last nodes are concatenated into the cell output
NUM_EDGES = sum(2 + i for i in range(STEPS))  # 14
CONCAT = range(2 + STEPS - MULTIPLIER, STEPS + 2)  # range(2, 6), as model_search.py prints it

__all__ = ["PRIMITIVES", "GENOTYPES", "DartsSpace", "build_supernet", "derive_genotype", "SearchCell"]


class SearchCell(nn.Module):
    """A DARTS search cell: preprocess both inputs, 14 mixed edges, concat of the 4 nodes."""

    def __init__(self, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 primitives: tuple[str, ...], partial_channels: int = 1):
        super().__init__()
        self.reduction = reduction
        # model_search.py Cell: FactorizedReduce after a reduction, else a 1x1 ReLUConvBN
        self.preprocess0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.dag = CellDAG(2, STEPS, lambda i, j: MixedOp(C, 2 if reduction and i < 2 else 1, primitives, partial_channels))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        """(B, C_pp, H', W'), (B, C_p, H, W) -> (B, 4C, H/r, W/r)."""
        states = self.dag([self.preprocess0(s0), self.preprocess1(s1)], mixing)
        return torch.cat(states[-MULTIPLIER:], dim=1)


class DartsSupernet(Supernet):
    """The DARTS search network (cnn/model_search.py Network) with alphas per cell type."""

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8,
                 primitives: tuple[str, ...] = PRIMITIVES, partial_channels: int = 1, stem_multiplier: int = 3):
        super().__init__(("normal", "reduce"), NUM_EDGES, primitives)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(C_pp, C_p, C_curr, reduction, reduction_prev, primitives, partial_channels))
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


def build_supernet(init_channels: int = 16, layers: int = 8, num_classes: int = 10, partial_channels: int = 1) -> DartsSupernet:
    """The DARTS supernet; defaults are the paper's search setting (sec. 3.1.1: 8 cells, 16 channels)."""
    return DartsSupernet(init_channels, num_classes, layers, PRIMITIVES, partial_channels)


def _derive_cell(weights: torch.Tensor, primitives: tuple[str, ...]) -> list[tuple[str, int]]:
    """DARTS rule (sec. 2.4; model_search.py genotype): per node, the 2 inputs whose best non-none op is strongest."""
    ops = [k for k, name in enumerate(primitives) if name != "none"]
    w = weights.detach().float().cpu()[:, ops]  # [E, K-1]
    gene, start = [], 0
    for node in range(STEPS):
        n = node + 2
        best, arg = w[start:start + n].max(dim=1)  # [n]
        # stable sort: ties keep the lower input index first, as Python's sorted in the reference
        kept = sorted(range(n), key=lambda j: -float(best[j]))[:2]
        gene += [(primitives[ops[int(arg[j])]], j) for j in kept]
        start += n
    return gene


def derive_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> Genotype:
    """Genotype of raw (pre-softmax) arch parameters [14, 8] by the DARTS rule on their softmax."""
    return DartsSpace().derive({"normal": F.softmax(alphas_normal, -1), "reduce": F.softmax(alphas_reduce, -1)})


class DartsSpace(SearchSpace):
    """The DARTS CNN space; ``init_channels``/``layers`` size the supernet and proxy networks,
    ``partial_channels`` K > 1 builds PC-DARTS mixed ops."""

    cell_types = ("normal", "reduce")
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 16, layers: int = 8, primitives: tuple[str, ...] = PRIMITIVES,
                 partial_channels: int = 1):
        self.init_channels = init_channels
        self.layers = layers
        self.partial_channels = partial_channels
        self.primitives = tuple(primitives)
        if self.primitives[0] != "none":
            raise ValueError(f"the DARTS space expects 'none' as primitive 0, got {self.primitives}")

    def build_supernet(self, num_classes: int) -> DartsSupernet:
        """The supernet at this space's size (partial channels K for PC-DARTS)."""
        return DartsSupernet(self.init_channels, num_classes, self.layers, self.primitives, self.partial_channels)

    def build_network(self, genotype: Genotype, num_classes: int) -> nn.Module:
        """NetworkCIFAR of the genotype at the search size, without auxiliary head, returning logits."""
        return _LogitsOnly(NetworkCIFAR(self.init_channels, num_classes, self.layers, False, genotype))

    def derive(self, weights: dict[str, torch.Tensor]) -> Genotype:
        """The DARTS rule on op weights [14, K] per cell type."""
        return Genotype(normal=_derive_cell(weights["normal"], self.primitives), normal_concat=CONCAT,
                        reduce=_derive_cell(weights["reduce"], self.primitives), reduce_concat=CONCAT)

    def to_text(self, genotype: Genotype) -> str:
        """The reference namedtuple repr."""
        return repr(genotype)

    def parse(self, text: str) -> Genotype:
        """A published name (e.g. DARTS_V2) or a Genotype(...) text."""
        text = text.strip()
        return GENOTYPES[text] if text in GENOTYPES else parse_genotype(text)

    def to_json(self, genotype: Genotype) -> dict:
        """The genotype's JSON form."""
        return genotype.to_json()

    def sample(self, generator: torch.Generator) -> Genotype:
        """Per node, 2 distinct inputs and a non-none op for each, uniformly."""
        ops = self.primitives[1:]

        def cell() -> list[tuple[str, int]]:
            gene = []
            for node in range(STEPS):
                first = randint(generator, node + 2)
                second = (first + 1 + randint(generator, node + 1)) % (node + 2)
                gene += [(ops[randint(generator, len(ops))], first), (ops[randint(generator, len(ops))], second)]
            return gene

        return Genotype(normal=cell(), normal_concat=CONCAT, reduce=cell(), reduce_concat=CONCAT)

    def mutate(self, genotype: Genotype, generator: torch.Generator) -> Genotype:
        """Change one pair's op, or its input node (to one its node does not already use)."""
        cell_type = self.cell_types[randint(generator, 2)]
        gene = list(getattr(genotype, cell_type))
        k = randint(generator, len(gene))
        op, src = gene[k]
        node = k // 2
        other = gene[k ^ 1][1]
        inputs = [j for j in range(node + 2) if j not in (src, other)]
        if inputs and randint(generator, 2):
            gene[k] = (op, inputs[randint(generator, len(inputs))])
        else:
            ops = [o for o in self.primitives[1:] if o != op]
            gene[k] = (ops[randint(generator, len(ops))], src)
        fields = {"normal": genotype.normal, "reduce": genotype.reduce, cell_type: gene}
        return Genotype(normal=fields["normal"], normal_concat=genotype.normal_concat,
                        reduce=fields["reduce"], reduce_concat=genotype.reduce_concat)

    def one_hot(self, genotype: Genotype) -> dict[str, Mixing]:
        """An op index per edge: the genotype's op on its kept edges, `none` elsewhere."""
        mixing = {}
        for cell_type in self.cell_types:
            index = [0] * NUM_EDGES  # `none`
            for k, (op, src) in enumerate(getattr(genotype, cell_type)):
                node = k // 2
                index[sum(range(2, node + 2)) + src] = self.primitives.index(op)
            mixing[cell_type] = Mixing(index=index)
        return mixing


class _LogitsOnly(nn.Module):
    """Adapts NetworkCIFAR's (logits, logits_aux) output to plain logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]
