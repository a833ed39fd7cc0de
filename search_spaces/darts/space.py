"""The DARTS CNN search space (Liu et al., ICLR 2019, sec. 2.1 and 3.1; code: quark0/darts cnn/).

Derivation, sampling, mutation and one-hot mixing of DARTS genotypes; the networks are in
``supernet.py`` (search) and ``network.py`` (retraining).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.diagrams import CellGraph
from darts.context import Context
from darts.supernet import Mixing, SupernetOptions
from darts.settings import integer
from search_spaces.base import SearchSpace, randint
from search_spaces.darts.genotype import Genotype, parse_genotype
from search_spaces.darts.genotypes import GENOTYPES
from search_spaces.darts.network import NetworkCIFAR
from search_spaces.darts.ops import PRIMITIVES
from search_spaces.darts.supernet import MULTIPLIER, NUM_EDGES, STEPS, DartsSupernet

CONCAT = range(2 + STEPS - MULTIPLIER, STEPS + 2)  # range(2, 6), as model_search.py prints it


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
    """The DARTS CNN space; ``init_channels``/``layers`` size the supernet and proxy networks."""

    cell_types = ("normal", "reduce")
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 16, layers: int = 8, primitives: tuple[str, ...] = PRIMITIVES):
        integer("model.init_channels", init_channels, 1)
        integer("model.layers", layers, 1)
        self.init_channels = init_channels
        self.layers = layers
        self.primitives = tuple(primitives)
        if self.primitives[0] != "none":
            raise ValueError(f"the DARTS space expects 'none' as primitive 0, got {self.primitives}")

    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> DartsSupernet:
        """The supernet at this space's size."""
        return DartsSupernet(self.init_channels, num_classes, self.layers, self.primitives, context=context,
                             options=options)

    def network_sizes(self) -> dict[str, int]:
        """NetworkCIFAR's and NetworkImageNet's: C and layers."""
        return {"C": self.init_channels, "layers": self.layers}

    def build_network(self, genotype: Genotype, num_classes: int) -> nn.Module:
        """NetworkCIFAR of the genotype at this space's size, without auxiliary head, returning logits."""
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
        if text in GENOTYPES:
            return GENOTYPES[text]
        if text.isidentifier():
            raise ValueError(f"unknown published genotype {text!r}; published names: {', '.join(GENOTYPES)}")
        return parse_genotype(text)

    def to_json(self, genotype: Genotype) -> dict:
        """The genotype's JSON form."""
        return genotype.to_json()

    def from_json(self, data: dict) -> Genotype:
        """The genotype of its JSON form."""
        return Genotype.from_json(data)

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
        return genotype._replace(**{cell_type: gene})

    def cell_graphs(self, genotype: Genotype) -> dict[str, CellGraph]:
        """DARTS Fig. 4-5: inputs c_{k-2}, c_{k-1}, intermediate nodes 0..3, output c_{k} (concat of the nodes)."""
        graphs = {}
        for cell_type in self.cell_types:
            pairs = getattr(genotype, cell_type)
            names = ["$c_{k-2}$", "$c_{k-1}$", *map(str, range(len(pairs) // 2))]
            edges = tuple((names[j], str(k // 2), op) for k, (op, j) in enumerate(pairs))
            concat = tuple(names[i] for i in getattr(genotype, f"{cell_type}_concat"))
            graphs[cell_type] = CellGraph(tuple(names[:2]), tuple(names[2:]), edges, "$c_{k}$", concat)
        return graphs

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

    def input_choices(self) -> tuple[tuple[tuple[int, ...], int], ...]:
        """Nodes 1-3 keep 2 of their 3, 4 and 5 input edges (sec. 2.4; node 0 has only 2)."""
        starts = [sum(range(2, node + 2)) for node in range(STEPS)]
        return tuple((tuple(range(start, start + node + 2)), 2) for node, start in enumerate(starts) if node > 0)


class _LogitsOnly(nn.Module):
    """Adapts NetworkCIFAR's (logits, logits_aux) output to plain logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        return self.net(x)[0]
