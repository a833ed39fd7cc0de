"""The DARTS CNN search space (Liu et al., ICLR 2019, sec. 2.1 and 3.1; code: quark0/darts cnn/).

Derivation, sampling, mutation and one-hot mixing of DARTS genotypes; the networks are in
``supernet.py`` (search) and ``network.py`` (retraining).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.diagrams import CellGraph
from darts.context import Context
from darts.supernet import Mixing, OpSet, SupernetOptions
from darts.settings import integer
from search_spaces.base import SearchSpace, randint
from search_spaces.darts.genotype import Genotype, parse_genotype
from search_spaces.darts.genotypes import GENOTYPES
from search_spaces.darts.network import Cell, NetworkCIFAR
from search_spaces.darts.op_sets import NUM_EDGES, op_set
from search_spaces.darts.supernet import MULTIPLIER, STEPS, DartsSupernet

CONCAT = range(2 + STEPS - MULTIPLIER, STEPS + 2)  # range(2, 6), as model_search.py prints it


def _best_op(weights: torch.Tensor, names: tuple[str, ...]) -> tuple[float, str]:
    """An edge's strongest op other than `none` and its weight; the first of equals wins, as the reference's strict
    ``>`` (model_search.py genotype; RobustDARTS src/search/model_search.py for per-edge op lists)."""
    k = max((k for k, name in enumerate(names) if name != "none"), key=lambda k: float(weights[k]))
    return float(weights[k]), names[k]


def _derive_cell(weights: torch.Tensor, names: tuple[tuple[str, ...], ...]) -> list[tuple[str, int]]:
    """DARTS rule (sec. 2.4; model_search.py genotype): per node, the 2 inputs whose best non-none op is strongest.
    ``names[e]``: the ops of edge e, the columns of ``weights`` [E, K]."""
    w = weights.detach().float().cpu()  # [E, K]
    gene, start = [], 0
    for node in range(STEPS):
        n = node + 2
        best = [_best_op(w[start + j], names[start + j]) for j in range(n)]
        # stable sort: ties keep the lower input index first, as Python's sorted in the reference
        kept = sorted(range(n), key=lambda j: -best[j][0])[:2]
        gene += [(best[j][1], j) for j in kept]
        start += n
    return gene


def derive_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> Genotype:
    """Genotype of raw (pre-softmax) arch parameters [14, 8] (the ``darts`` op set) by the DARTS rule on their softmax."""
    return DartsSpace().derive({"normal": F.softmax(alphas_normal, -1), "reduce": F.softmax(alphas_reduce, -1)})


class DartsSpace(SearchSpace):
    """The DARTS CNN space; ``init_channels``/``layers`` size the supernet and proxy networks, ``ops`` is the op set
    searched (a name of ``search_spaces.darts.op_sets.OP_SETS``, a list of op names, or per cell type and edge)."""

    costed = True
    cell_types = ("normal", "reduce")
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 16, layers: int = 8, ops: str | Sequence[str] | dict = "darts"):
        integer("model.init_channels", init_channels, 1)
        integer("model.layers", layers, 1)
        self.init_channels = init_channels
        self.layers = layers
        self._ops = op_set(ops)
        self.primitives = self._ops.primitives
        # an edge that searches no `none` cannot show that a genotype leaves it out: index K says so (``choices``)
        self._unused = {t: tuple(row.index("none") if "none" in row else None for row in self._ops.edges[t])
                        for t in self.cell_types}

    @property
    def ops(self) -> OpSet:
        """The op set searched on each edge."""
        return self._ops

    @property
    def choices(self) -> int:
        """K, plus one where some edge has no `none` to mark it unused."""
        return self._ops.k + any(i is None for cell in self._unused.values() for i in cell)

    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> DartsSupernet:
        """The supernet at this space's size."""
        return DartsSupernet(self.init_channels, num_classes, self.layers, self._ops, context=context,
                             options=options)

    def network_sizes(self) -> dict[str, int]:
        """NetworkCIFAR's and NetworkImageNet's: C and layers."""
        return {"C": self.init_channels, "layers": self.layers}

    def build_network(self, genotype: Genotype, num_classes: int) -> nn.Module:
        """NetworkCIFAR of the genotype at this space's size, without auxiliary head, returning logits."""
        return _LogitsOnly(NetworkCIFAR(self.init_channels, num_classes, self.layers, False, genotype))

    def derive(self, weights: dict[str, torch.Tensor]) -> Genotype:
        """The DARTS rule on op weights [14, K] per cell type."""
        return Genotype(normal=_derive_cell(weights["normal"], self._ops.edges["normal"]), normal_concat=CONCAT,
                        reduce=_derive_cell(weights["reduce"], self._ops.edges["reduce"]), reduce_concat=CONCAT)

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

    def _searched(self, cell_type: str, node: int, src: int) -> list[str]:
        """The ops other than `none` that the edge from ``src`` into ``node`` searches."""
        return [o for o in self._ops.edges[cell_type][sum(range(2, node + 2)) + src] if o != "none"]

    def sample(self, generator: torch.Generator) -> Genotype:
        """Per node, 2 distinct inputs and a non-none op of each one's edge, uniformly."""

        def cell(cell_type: str) -> list[tuple[str, int]]:
            gene = []
            for node in range(STEPS):
                first = randint(generator, node + 2)
                second = (first + 1 + randint(generator, node + 1)) % (node + 2)
                for src in (first, second):
                    ops = self._searched(cell_type, node, src)
                    gene.append((ops[randint(generator, len(ops))], src))
            return gene

        return Genotype(normal=cell("normal"), normal_concat=CONCAT, reduce=cell("reduce"), reduce_concat=CONCAT)

    def mutate(self, genotype: Genotype, generator: torch.Generator) -> Genotype:
        """Change one pair's op, or its input node (to one its node does not already use; the op stays when the new
        edge searches it, else one of the new edge's ops is drawn)."""
        cell_type = self.cell_types[randint(generator, 2)]
        gene = list(getattr(genotype, cell_type))
        k = randint(generator, len(gene))
        op, src = gene[k]
        node = k // 2
        other = gene[k ^ 1][1]
        inputs = [j for j in range(node + 2) if j not in (src, other)]
        ops = [o for o in self._searched(cell_type, node, src) if o != op]
        if inputs and (not ops or randint(generator, 2)):
            new = inputs[randint(generator, len(inputs))]
            searched = self._searched(cell_type, node, new)
            gene[k] = (op if op in searched else searched[randint(generator, len(searched))], new)
        else:
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
        """An op index per edge: the genotype's op on its kept edges; elsewhere, and where a pair's op is `none` (Fair
        DARTS's dropped edges), `none` or None (left out) on an edge that searches no `none`. ValueError when the
        genotype uses an op its edge does not search."""
        mixing = {}
        for cell_type in self.cell_types:
            index = list(self._unused[cell_type])
            for k, (op, src) in enumerate(getattr(genotype, cell_type)):
                if op == "none":
                    continue
                e = sum(range(2, k // 2 + 2)) + src
                names = self._ops.edges[cell_type][e]
                if op not in names:
                    raise ValueError(f"{cell_type} edge {e} ({src} -> node {k // 2}) of this genotype is {op!r}, "
                                     f"which the op set does not search there; it searches {', '.join(names)}")
                index[e] = names.index(op)
            mixing[cell_type] = Mixing(index=index)
        return mixing

    def cost_probes(self) -> list[Genotype]:
        """Genotypes that together put every searched op but `none` on every edge: each node takes, per genotype, the
        2 input edges with the most ops not yet placed, each with one of those ops (the standard concat)."""
        todo = {(t, e): [o for o in row if o != "none"] for t in self.cell_types
                for e, row in enumerate(self._ops.edges[t])}
        probes = []
        while any(todo.values()):
            cells = {t: self._probe_cell(t, todo) for t in self.cell_types}
            probes.append(Genotype(normal=cells["normal"], normal_concat=CONCAT, reduce=cells["reduce"],
                                   reduce_concat=CONCAT))
        return probes

    def _probe_cell(self, cell_type: str, todo: dict[tuple[str, int], list[str]]) -> list[tuple[str, int]]:
        """One probe cell: per node the 2 inputs with most ops left to place, each with the next of them (or its
        edge's first op when none is left); the placed ops leave ``todo``."""
        gene = []
        for node in range(STEPS):
            start = sum(range(2, node + 2))
            inputs = sorted(range(node + 2), key=lambda j: -len(todo[cell_type, start + j]))[:2]
            for src in inputs:
                left = todo[cell_type, start + src]
                gene.append((left.pop(0) if left else self._searched(cell_type, node, src)[0], src))
        return gene

    def edge_ops(self, network: nn.Module, genotype: Genotype) -> dict[tuple[str, int, str], list[nn.Module]]:
        """Each pair's op module in every cell (``Cell._ops``, in genotype order), by its edge."""
        groups: dict[tuple[str, int, str], list[nn.Module]] = {}
        cells = [m for m in network.modules() if isinstance(m, Cell)]
        for cell in cells:
            cell_type = "reduce" if cell.reduction else "normal"
            for (t, e, op), module in zip(self._pair_edges(genotype, cell_type), cell._ops):
                if op != "none":
                    groups.setdefault((t, e, op), []).append(module)
        return groups

    def edge_choices(self, genotype: Genotype) -> list[tuple[str, int, str]]:
        """Every pair's (cell type, edge, op) but `none` ones; ValueError for a concat other than nodes 2-5, whose
        cells change width with the genotype (the additive model assumes DARTS's fixed concat)."""
        for t in self.cell_types:
            if tuple(getattr(genotype, f"{t}_concat")) != tuple(CONCAT):
                raise ValueError(f"the cost model needs {t}_concat={list(CONCAT)}, got "
                                 f"{list(getattr(genotype, f'{t}_concat'))}: count the built network instead")
        return [c for t in self.cell_types for c in self._pair_edges(genotype, t) if c[2] != "none"]

    @staticmethod
    def _pair_edges(genotype: Genotype, cell_type: str) -> list[tuple[str, int, str]]:
        """(cell type, edge, op) of each (op, input) pair of a cell, in genotype order."""
        return [(cell_type, sum(range(2, k // 2 + 2)) + src, op) for k, (op, src) in enumerate(getattr(genotype, cell_type))]

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
