"""Weight-sharing building blocks: the mixed op, the cell DAG and the supernet base.

The supernet owns the architecture parameters (so they checkpoint with it) but never interprets
them: its forward takes the per-edge mixing weights a strategy computed (``Mixing``). This is the
continuous relaxation of DARTS (Liu et al., ICLR 2019, eq. 2) with the softmax taken out, so that
GDAS, PC-DARTS, DrNAS and random single paths reuse the same network. The supernet declares its
``Structure`` (its ``OpSet``, nodes, partial-channel groups, auxiliary skips), built from the ``SupernetOptions`` a
strategy asks for; strategies read it, and never walk the modules.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.checkpointing import cells_plain, recomputed
from darts.context import Context
from darts.mixed_op import MixedOp, PartialChannels, SharedInput, run_op


@dataclass
class Mixing:
    """Mixing weights of one cell type for one forward pass.

    Args:
        weights: [E, K] per-edge op weights (softmax, Dirichlet sample, straight-through one-hot).
        index: [E] when set, edge e computes only op ``index[e]`` (scaled by ``weights[e, index[e]]``
            when weights are given, so gradients still reach the arch parameters); None leaves edge e out (a
            genotype's unused edge in an op set without `none`).
        edge_weights: [E] per-edge scale applied to each edge's output (PC-DARTS edge normalisation).
        skip_weight: every edge adds ``skip_weight * skip(x)``, its auxiliary skip connection (a supernet built
            with ``SupernetOptions(auxiliary_skip=True)``; DARTS-'s beta).
        kept: [E] per edge, the indices of the ops computed (a pruned supernet, DrNAS); the others must have
            weight 0 and are skipped.
        per_cell: called by every cell that mixes with this ``Mixing``, in forward order, with it; returns the
            ``Mixing`` that cell uses (e.g. its own copy of the weights, whose gradient is that cell's alone:
            Lambda-DARTS's layer gradients).
    """

    weights: torch.Tensor | None = None
    index: Sequence[int | None] | None = None
    edge_weights: torch.Tensor | None = None
    skip_weight: float | None = None
    kept: Sequence[Sequence[int]] | None = None
    per_cell: Callable[[Mixing], Mixing] | None = None

    def __post_init__(self) -> None:
        if self.weights is None and self.index is None:
            raise ValueError("Mixing needs soft weights, a hard index per edge, or both")


@dataclass(frozen=True)
class OpSet:
    """The searched ops: for each cell type, the K op names of each of its E edges. Row e of ``alphas[t]`` weighs the
    ops ``edges[t][e]``, column k the op ``edges[t][e][k]``. Most spaces search the same K ops on every edge
    (``OpSet.uniform``); RobustDARTS's S1 (Zela et al., ICLR 2020, sec. 3) gives each edge its own pair.

    Args:
        edges: cell type -> E tuples of K op names (the same K on every edge: the alphas are [E, K]).
    """

    edges: Mapping[str, tuple[tuple[str, ...], ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", {t: tuple(tuple(row) for row in cell) for t, cell in self.edges.items()})
        rows = [row for cell in self.edges.values() for row in cell]
        if not rows or len({len(cell) for cell in self.edges.values()}) != 1:
            raise ValueError(f"an op set needs the same number of edges in every cell type, got "
                             f"{ {t: len(cell) for t, cell in self.edges.items()} }")
        if len({len(row) for row in rows}) != 1 or not rows[0]:
            raise ValueError(f"every edge must search the same number of ops (the alphas are [E, K]), got "
                             f"{sorted({len(row) for row in rows})} ops")
        for row in rows:
            if len(set(row)) != len(row):
                raise ValueError(f"an edge lists an op twice: {list(row)}")

    @classmethod
    def uniform(cls, cell_types: Sequence[str], num_edges: int, names: Sequence[str]) -> OpSet:
        """The same ops on every edge of every cell type."""
        return cls({t: (tuple(names),) * num_edges for t in cell_types})

    @property
    def k(self) -> int:
        """K: ops per edge."""
        return len(next(iter(self.edges.values()))[0])

    @property
    def num_edges(self) -> int:
        """E: edges per cell."""
        return len(next(iter(self.edges.values())))

    @property
    def primitives(self) -> tuple[str, ...]:
        """Every op name searched somewhere, in first-seen order."""
        return tuple(dict.fromkeys(name for cell in self.edges.values() for row in cell for name in row))

    def names(self, cell_type: str, edge: int) -> tuple[str, ...]:
        """The K op names of one edge."""
        return self.edges[cell_type][edge]

    def columns(self, cell_type: str) -> tuple[str, ...] | None:
        """The K op names when every edge of ``cell_type`` searches the same ops, else None."""
        rows = set(self.edges[cell_type])
        return next(iter(rows)) if len(rows) == 1 else None


@dataclass(frozen=True)
class SupernetOptions:
    """What a strategy needs the supernet to offer (``Strategy.supernet_options``); the space builds it so.

    Args:
        partial_channels: K: 1/K of each edge's channels go through its ops (PC-DARTS, Xu et al., ICLR 2020, sec. 3.2).
        auxiliary_skip: a skip connection on every edge beside its ops (DARTS-, Chu et al., ICLR 2021).
    """

    partial_channels: int = 1
    auxiliary_skip: bool = False


@dataclass(frozen=True)
class Structure:
    """What a supernet is made of, declared by it: cell types, ops, edges and what its mixed ops offer.

    Args:
        cell_types: e.g. ("normal", "reduce").
        ops: the K op names of every edge (``OpSet``).
        node_inputs: incoming edges of each intermediate node, in edge order (DARTS: 2, 3, 4, 5).
        partial_channels, auxiliary_skip: the ``SupernetOptions`` it was built with (K may change: DrNAS widens).
    """

    cell_types: tuple[str, ...]
    ops: OpSet
    node_inputs: tuple[int, ...]
    partial_channels: int = 1
    auxiliary_skip: bool = False

    @property
    def num_edges(self) -> int:
        """E: edges per cell."""
        return sum(self.node_inputs)


class CellDAG(nn.Module):
    """The edges of a cell: node j = sum over earlier states i of edge (i, j) applied to state i.

    Edges are ordered by destination node, then source, as in DARTS model_search.py and the
    NAS-Bench-201 cells, so row e of a [E, K] weight matrix is edge e. With ``make_skip`` every edge also has an
    auxiliary skip, added with the mixing's ``skip_weight``.
    """

    def __init__(self, num_inputs: int, num_nodes: int, make_edge: Callable[[int, int], nn.Module],
                 make_skip: Callable[[int, int], nn.Module] | None = None, checkpoint: bool = False):
        super().__init__()
        self.num_inputs, self.num_nodes, self.checkpoint = num_inputs, num_nodes, checkpoint
        pairs = [(i, j) for j in range(num_nodes) for i in range(num_inputs + j)]
        self.edges = nn.ModuleList(make_edge(i, j) for i, j in pairs)
        self.skips = None if make_skip is None else nn.ModuleList(make_skip(i, j) for i, j in pairs)

    def forward(self, inputs: list[torch.Tensor], mixing: Mixing) -> list[torch.Tensor]:
        """Return all states (inputs, then the num_nodes intermediate nodes); with ``checkpoint``, the nodes are
        recomputed in backward (the same mixing, so the same sampled ops; the random stream of noise ops replayed)."""
        if mixing.per_cell is not None:  # once per cell, outside the recomputed part
            mixing = mixing.per_cell(mixing)
        if self.checkpoint and torch.is_grad_enabled() and not cells_plain():
            return [*inputs, *recomputed(self, self.nodes, inputs, mixing)]
        return [*inputs, *self.nodes(inputs, mixing)]

    def nodes(self, inputs: list[torch.Tensor], mixing: Mixing) -> list[torch.Tensor]:
        """The num_nodes intermediate nodes of the cell on ``inputs``."""
        if mixing.skip_weight is not None and self.skips is None:
            raise ValueError("a skip_weight needs a supernet built with auxiliary skips (SupernetOptions)")
        states = list(inputs)
        shared = [SharedInput(s) for s in states]
        e = 0
        for j in range(self.num_nodes):
            node = None
            for s, sh in zip(states, shared):
                if mixing.index is None or mixing.index[e] is not None:  # None: an unused edge adds nothing
                    y = self.edge(e, s, sh, mixing)
                    node = y if node is None else node + y
                e += 1
            if node is None:
                raise ValueError(f"intermediate node {j} has no used input edge in this mixing")
            states.append(node)
            shared.append(SharedInput(node))
        return states[len(inputs):]

    def edge(self, e: int, x: torch.Tensor, shared: SharedInput | None, m: Mixing) -> torch.Tensor:
        """Edge e on x: its mixed op, plus the weighted auxiliary skip, scaled by the edge weight."""
        y = self.edges[e](x, None if m.weights is None else m.weights[e], None if m.index is None else m.index[e],
                          shared, None if m.kept is None else m.kept[e])
        if m.skip_weight is not None:
            y = y + m.skip_weight * run_op(self.skips[e], x, shared if self.edges[e].fast else None)
        return y if m.edge_weights is None else m.edge_weights[e].to(y.dtype) * y


class Supernet(nn.Module, ABC):
    """Base of every supernet: owns alphas [E, K] per cell type and declares its ``structure``; subclasses
    implement ``logits``. ``context`` (``darts.context.Context``) is given when it is built: its autocast and
    memory format apply in ``forward``, its ``fast`` flag to the mixed ops the subclass builds."""

    def __init__(self, ops: OpSet, num_inputs: int, num_nodes: int, context: Context = Context(),
                 options: SupernetOptions = SupernetOptions()):
        super().__init__()
        node_inputs = tuple(num_inputs + j for j in range(num_nodes))
        if ops.num_edges != sum(node_inputs):
            raise ValueError(f"the op set has {ops.num_edges} edges per cell, the cell {sum(node_inputs)}")
        self.structure = Structure(tuple(ops.edges), ops, node_inputs, options.partial_channels, options.auxiliary_skip)
        self.context = context
        # DARTS model_search.py _initialize_alphas: 1e-3 * randn
        self.alphas = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(self.num_edges, ops.k))
                                        for t in self.cell_types})

    @property
    def cell_types(self) -> tuple[str, ...]:
        """The cell types, e.g. ("normal", "reduce")."""
        return self.structure.cell_types

    @property
    def ops(self) -> OpSet:
        """The op names of every edge."""
        return self.structure.ops

    @property
    def num_edges(self) -> int:
        """E: edges per cell."""
        return self.structure.num_edges

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alphas), one [E, K] tensor per cell type."""
        return [self.alphas[t] for t in self.cell_types]

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights: every parameter that is not an alpha."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def candidate_ops(self) -> dict[str, nn.Module]:
        """Every candidate op of every edge of every cell, ``{"<mixed op>/<primitive>": op}`` in module order: what
        op-level methods act on (OLES's early stopping)."""
        return {f"{name}/{primitive}": op for name, m in self.named_modules() if isinstance(m, MixedOp)
                for primitive, op in m.candidates().items()}

    def widen(self, partial_channels: int, generator: torch.Generator) -> dict[nn.Parameter, tuple]:
        """Every partial-channel mixed op rebuilt for C / ``partial_channels`` channels (``PartialChannels.widen``);
        returns {new parameter: (old parameter, channel maps)}."""
        widened = {}
        for op in [m for m in self.modules() if isinstance(m, PartialChannels)]:
            widened.update(op.widen(partial_channels, generator))
        self.structure = replace(self.structure, partial_channels=partial_channels)
        return widened

    def forward(self, x: torch.Tensor, mixing: dict[str, Mixing] | None = None) -> torch.Tensor:
        """Logits for x (B, 3, H, W); without mixing, the DARTS relaxation softmax(alphas)."""
        if mixing is None:
            mixing = {t: Mixing(F.softmax(self.alphas[t], dim=-1)) for t in self.cell_types}
        x = x.contiguous(memory_format=self.context.memory_format)
        # the mixing weights arrive in fp32 (computed outside); only the network runs in the autocast dtype
        with self.context.autocast():
            logits = self.logits(x, mixing)
        return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits  # fp32 out of autocast

    @abstractmethod
    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """Forward pass with the given mixing weights per cell type."""
