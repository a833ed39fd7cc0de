"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020, sec. 2; code: D-X-Y/AutoDL-Projects).

A cell is a DAG of 4 nodes: node 0 is the cell input and node i (1..3) sums one op applied to each
earlier node, so each of the 6 edges picks one of 5 ops (5^6 = 15,625 cells); node 3 is the output.
Genotypes are ``NB201Genotype`` values written as the benchmark's strings (``genotype.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from darts.diagrams import CellGraph
from darts.context import Context
from darts.settings import integer
from darts.supernet import Mixing, SupernetOptions
from search_spaces.base import SearchSpace, randint
from search_spaces.nb201.genotype import (EDGES, NUM_EDGES, NUM_NODES, PRIMITIVES, Arch, NB201Genotype, as_genotype,
                                          format_arch, parse_arch)
from search_spaces.nb201.network import InferCell, TinyNetwork
from search_spaces.nb201.supernet import NB201Supernet

# The edges (indices into EDGES) of each path from node 0 (input) to node 3 (output): 0->3, 0->1->3, 0->2->3, 0->1->2->3
# (naszilla/naszilla nas_bench_201/cell_201.py get_paths ``path_blueprints``)
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


class NB201Space(SearchSpace):
    """The NB201 space; ``init_channels``/``cells_per_stage`` size the supernet and networks."""

    primitives = PRIMITIVES
    costed = True
    cell_types = ("cell",)
    num_edges = NUM_EDGES

    def __init__(self, init_channels: int = 16, cells_per_stage: int = 5, track_running_stats: bool = False):
        integer("model.init_channels", init_channels, 1)
        integer("model.cells_per_stage", cells_per_stage, 1)
        self.init_channels = init_channels
        self.cells_per_stage = cells_per_stage
        self.track_running_stats = track_running_stats

    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> NB201Supernet:
        """The supernet at this space's size."""
        return NB201Supernet(self.init_channels, self.cells_per_stage, num_classes, self.track_running_stats,
                             context, options)

    def network_sizes(self) -> dict[str, int]:
        """TinyNetwork's: C and N."""
        return {"C": self.init_channels, "N": self.cells_per_stage}

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

    def from_json(self, data: dict) -> NB201Genotype:
        """The genotype of ``{"arch": <benchmark string>}``."""
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise ValueError(f"NB201 genotype JSON must be {{\"arch\": \"|op~0|+...\"}}, got {str(data)[:80]}")
        return parse_arch(data["arch"])

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

    def cell_graphs(self, genotype: Arch) -> dict[str, CellGraph]:
        """NB201 Fig. 1: node 0 the input, nodes 1-3, node 3 the output; `none` edges are not drawn."""
        ops = as_genotype(genotype).ops
        edges = tuple((str(j), str(i), op) for op, (i, j) in zip(ops, EDGES) if op != "none")
        return {"cell": CellGraph(("0",), tuple(str(i) for i in range(1, NUM_NODES + 1)), edges)}

    def one_hot(self, genotype: Arch) -> dict[str, Mixing]:
        """The genotype's op index on each edge."""
        return {"cell": Mixing(index=[PRIMITIVES.index(op) for op in as_genotype(genotype).ops])}

    def cost_probes(self) -> list[NB201Genotype]:
        """One cell per op but `none`, that op on all 6 edges."""
        return [NB201Genotype.from_ops([op] * NUM_EDGES) for op in PRIMITIVES if op != "none"]

    def edge_ops(self, network: nn.Module, genotype: Arch) -> dict[tuple[str, int, str], list[nn.Module]]:
        """Each edge's op module in every cell of the network (``InferCell.layers``)."""
        groups: dict[tuple[str, int, str], list[nn.Module]] = {}
        for cell in network.modules():
            if isinstance(cell, InferCell):
                for e, op in enumerate(cell.genotype.ops):
                    if op != "none":
                        groups.setdefault(("cell", e, op), []).append(cell.layers[e])
        return groups

    def edge_choices(self, genotype: Arch) -> list[tuple[str, int, str]]:
        """The op of every edge but `none` ones."""
        return [("cell", e, op) for e, op in enumerate(as_genotype(genotype).ops) if op != "none"]

    def encode(self, genotype: Arch) -> torch.Tensor:
        """BANANAS's path encoding (White et al., AAAI 2021, sec. 4; naszilla/naszilla nas_bench_201/cell_201.py
        ``encode_paths``): one bit per op sequence of length 1-3 (5 + 25 + 125 = 155), set when some input-to-output
        path of the cell carries those ops, `none` included as in the reference. [155]"""
        ops = [PRIMITIVES.index(op) for op in as_genotype(genotype).ops]
        k = len(PRIMITIVES)
        encoding = torch.zeros(sum(k ** n for n in range(1, len(PATHS[-1]) + 1)))
        for path in PATHS:
            offset = sum(k ** n for n in range(1, len(path)))  # the sequences of shorter paths come first
            encoding[offset + sum(ops[e] * k ** i for i, e in enumerate(path))] = 1.0
        return encoding
