"""NAS-Bench-201 cells as values: the op set, the edge order, the genotype and its benchmark string.

An architecture is written as in the benchmark (Dong & Yang, ICLR 2020, sec. 2), e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``,
where ``op~j`` in the i-th ``|...|`` group is the edge from node j into node i (AutoDL-Projects
lib/models/cell_searchs/genotypes.py ``Structure``).
"""
from __future__ import annotations

import operator
from typing import Iterable, Sequence, Union

# lib/models/cell_operations.py NAS_BENCH_201, in that order (index 0 is `none`)
PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 3  # intermediate nodes; node 0 is the cell input
# (destination, source) of each edge: the order of search_cells.py's sorted edge keys '1<-0' .. '3<-2'
EDGES = tuple((i, j) for i in range(1, NUM_NODES + 1) for j in range(i))
NUM_EDGES = len(EDGES)  # 6

class NB201Genotype(tuple):
    """One NB201 cell: 3 nodes, node i a tuple of i (op, input) pairs with inputs 0..i-1 in order.

    An immutable, hashable tuple validated when built; ``str()`` gives the benchmark string.
    """

    def __new__(cls, nodes: Iterable[Iterable[Sequence]]) -> NB201Genotype:
        if isinstance(nodes, str):
            raise ValueError(f"use parse_arch for an NB201 string, got {nodes!r}")
        nodes = list(nodes)
        if len(nodes) != NUM_NODES:
            raise ValueError(f"an NB201 cell has {NUM_NODES} nodes, got {len(nodes)}")
        built = []
        for i, node in enumerate(nodes, start=1):
            pairs = tuple(_check_pair(pair, i) for pair in node)
            if [j for _, j in pairs] != list(range(i)):
                raise ValueError(f"node {i} must have one edge from each of nodes 0..{i - 1} in order, "
                                 f"got inputs {[j for _, j in pairs]}")
            built.append(pairs)
        return super().__new__(cls, built)

    @property
    def ops(self) -> tuple[str, ...]:
        """The op of each of the 6 edges, in edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""
        return tuple(op for node in self for op, _ in node)

    @classmethod
    def from_ops(cls, ops: Sequence[str]) -> NB201Genotype:
        """The genotype with op ``ops[e]`` on edge e."""
        if len(ops) != NUM_EDGES:
            raise ValueError(f"an NB201 cell has {NUM_EDGES} edges, got {len(ops)} ops")
        nodes = [[] for _ in range(NUM_NODES)]
        for op, (i, j) in zip(ops, EDGES):
            nodes[i - 1].append((op, j))
        return cls(nodes)

    def __str__(self) -> str:
        return format_arch(self)

    def __repr__(self) -> str:
        return f"NB201Genotype({format_arch(self)!r})"


def _check_pair(pair: Sequence, node: int) -> tuple[str, int]:
    """Validate one (op, input) pair of node ``node``."""
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise ValueError(f"node {node}: each edge must be an (op, input) pair, got {pair!r}")
    op, j = pair
    if op not in PRIMITIVES:
        raise ValueError(f"node {node}: unknown op {op!r}; valid ops: {list(PRIMITIVES)}")
    if isinstance(j, bool) or not hasattr(j, "__index__"):
        raise ValueError(f"node {node}: input of {op!r} must be an int, got {j!r}")
    return op, operator.index(j)


def parse_arch(text: str) -> NB201Genotype:
    """Parse an NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (never eval); ValueError if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"an NB201 arch string is needed, got {type(text).__name__}")
    groups = text.strip().split("+")
    if len(groups) != NUM_NODES:
        raise ValueError(f"NB201 arch {text!r} must have {NUM_NODES} '+'-separated nodes, got {len(groups)}")
    nodes = []
    for i, group in enumerate(groups, start=1):
        if len(group) < 2 or group[0] != "|" or group[-1] != "|":
            raise ValueError(f"node {i} of {text!r} must look like |op~j|...|, got {group!r}")
        pairs = []
        for item in group[1:-1].split("|"):
            op, sep, src = item.partition("~")
            if not sep or not (src.isascii() and src.isdigit()):
                raise ValueError(f"malformed edge {item!r} in node {i} of {text!r}; expected 'op~j'")
            pairs.append((op, int(src)))
        nodes.append(pairs)
    try:
        return NB201Genotype(nodes)
    except ValueError as err:
        raise ValueError(f"{err}, in NB201 arch {text!r}") from None


def format_arch(genotype: Iterable[Iterable[Sequence]]) -> str:
    """The NB201 string of a genotype (the benchmark's ``Structure.tostr``)."""
    g = genotype if isinstance(genotype, NB201Genotype) else NB201Genotype(genotype)
    return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in g)


Arch = Union[str, NB201Genotype, Sequence]


def as_genotype(arch: Arch) -> NB201Genotype:
    """A genotype from an NB201 string or a nested (op, input) sequence."""
    if isinstance(arch, NB201Genotype):
        return arch
    if isinstance(arch, str):
        return parse_arch(arch)
    return NB201Genotype(arch)
