"""Weight-sharing building blocks: the mixed op, the cell DAG and the supernet base.

The supernet owns the architecture parameters (so they checkpoint with it) but never interprets
them: its forward takes the per-edge mixing weights a strategy computed (``Mixing``). This is the
continuous relaxation of DARTS (Liu et al., ICLR 2019, eq. 2) with the softmax taken out, so that
GDAS, PC-DARTS, DrNAS and random single paths reuse the same network.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.ops import FactorizedReduce, HeadSplit, Identity, Zero, head_split
from darts.context import Runtime, autocast
from darts.widening import widen_like


@dataclass
class Mixing:
    """Mixing weights of one cell type for one forward pass.

    Args:
        weights: [E, K] per-edge op weights (softmax, Dirichlet sample, straight-through one-hot).
        index: [E] when set, edge e computes only op ``index[e]`` (scaled by ``weights[e, index[e]]``
            when weights are given, so gradients still reach the arch parameters).
        edge_weights: [E] per-edge scale applied to each edge's output (PC-DARTS edge normalisation).
        skip_weight: DARTS-'s beta: every edge adds ``skip_weight * skip(x)``, its auxiliary skip connection
            (mixed ops built with ``auxiliary_skip``).
        kept: [E] per edge, the indices of the ops computed (DrNAS's pruned supernet); the others must have weight
            0 and are skipped.
    """

    weights: torch.Tensor | None = None
    index: Sequence[int] | None = None
    edge_weights: torch.Tensor | None = None
    skip_weight: float | None = None
    kept: Sequence[Sequence[int]] | None = None

    def __post_init__(self) -> None:
        if self.weights is None and self.index is None:
            raise ValueError("Mixing needs soft weights, a hard index per edge, or both")


def is_channels_last(x: torch.Tensor) -> bool:
    """True when x (B, C, H, W) is stored channels-innermost (NHWC) and not also plain-contiguous."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups (ShuffleNet; PC-DARTS model_search.py channel_shuffle), keeping x's layout."""
    b, c, h, w = x.shape
    if is_channels_last(x):  # shuffle the innermost dim of the NHWC storage: the result stays channels_last
        nhwc = x.permute(0, 2, 3, 1)
        return nhwc.reshape(b, h, w, groups, c // groups).transpose(3, 4).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class SharedInput:
    """One input state and the parameter-free work on it (leading ReLU, pools, identity, PC-DARTS's
    channel split), each computed once and reused by every edge leaving that state (issue 7: less work per step)."""

    def __init__(self, x: torch.Tensor):
        self.x = x  # (B, C, H, W)
        self._cache: dict[tuple, torch.Tensor] = {}
        self._parts: dict[int, SharedInput] = {}

    def get(self, key: tuple, head: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """head(x), computed on the first request for ``key``."""
        if key not in self._cache:
            self._cache[key] = head(self.x)
        return self._cache[key]

    def part(self, c: int) -> SharedInput:
        """The first c channels (PC-DARTS's partial channels) as a SharedInput, copied once into x's layout."""
        if c not in self._parts:
            layout = torch.channels_last if is_channels_last(self.x) else torch.contiguous_format
            self._parts[c] = SharedInput(self.x[:, :c].contiguous(memory_format=layout))
        return self._parts[c]


class MixedOp(nn.Module):
    """All candidate ops of one edge; output = sum_k w_k * op_k(x) (DARTS eq. 2).

    With ``partial_channels`` K > 1 only C/K channels go through the ops and the rest bypass them,
    followed by a channel shuffle (PC-DARTS, Xu et al., ICLR 2020, sec. 3.2). ``ops`` is the space's op
    table (name -> factory(C, stride, affine)); search ops are built without affine BN parameters.

    ``fast`` (default): `none` (``darts.ops.Zero``) is never computed (it adds exactly zero, value and
    gradient) and the parameter-free heads the ops declare (``darts.ops.HeadSplit``) come from a
    ``SharedInput``; ``fast=False`` is the reference's plain computation of every op, kept for
    benchmarks and equivalence tests.

    ``auxiliary_skip`` adds DARTS-'s auxiliary skip connection (Chu et al., ICLR 2021;
    Meituan-AutoML/DARTS- model_search.py ``MixedOp``): with a ``skip_weight`` beta the edge outputs
    ``mix(x) + beta * skip(x)``, skip the identity at stride 1 and an affine-free FactorizedReduce of its own
    at stride 2 (the only parameters it adds).
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str],
                 ops: Mapping[str, Callable[[int, int, bool], nn.Module]], partial_channels: int = 1,
                 fast: bool = True, auxiliary_skip: bool = False):
        super().__init__()
        if C % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide the channels C={C}")
        self.primitives = tuple(primitives)
        self.stride = stride
        self.k = partial_channels
        self.fast = fast
        self.C, self._factory = C, ops
        self._ops = nn.ModuleList(ops[name](C // partial_channels, stride, False) for name in self.primitives)
        self._active = [i for i, op in enumerate(self._ops) if not isinstance(op, Zero)]
        # a plain list (the modules are registered in _ops): each op's declared head, or None
        self._splits: list[HeadSplit | None] = [head_split(op) for op in self._ops]
        self.skip = (FactorizedReduce(C, C, affine=False) if stride == 2 else Identity()) if auxiliary_skip else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None,
                shared: SharedInput | None = None, skip_weight: float | None = None,
                kept: Sequence[int] | None = None) -> torch.Tensor:
        """Mix the ops on x (B, C, H, W); weights [K] or None; index picks a single op; ``shared``
        holds x's parameter-free heads, used by the fast path; ``skip_weight`` adds the auxiliary skip; ``kept``
        the ops computed (the others have weight 0)."""
        shared = shared if self.fast else None
        out = self._partial(x, weights, index, shared, kept)
        if skip_weight is None:
            return out
        if self.skip is None:
            raise ValueError("a skip_weight needs mixed ops built with auxiliary_skip=True "
                             "(search_space.auxiliary_skip)")
        return out + skip_weight * self._call(self.skip, head_split(self.skip), x, shared)

    def _partial(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None,
                 shared: SharedInput | None, kept: Sequence[int] | None) -> torch.Tensor:
        """The mixed ops on x, through PC-DARTS's partial channels when K > 1."""
        if self.k == 1:
            return self._mix(x, weights, index, shared, kept)
        c = x.shape[1] // self.k
        if shared is None:
            mixed, rest = self._mix(x[:, :c], weights, index, None, kept), self._bypass(x, c)
        else:
            part = shared.part(c)  # (B, C/K, H, W)
            mixed = self._mix(part.x, weights, index, part, kept)
            rest = shared.get(("bypass", c, self.stride), partial(self._bypass, c=c))
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.k)

    def _bypass(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """PC-DARTS: the channels after the first c skip the ops, max-pooled at stride 2 -> (B, C - c, H', W')."""
        return F.max_pool2d(x[:, c:], 2, 2) if self.stride == 2 else x[:, c:]

    def _run(self, i: int, x: torch.Tensor, shared: SharedInput | None) -> torch.Tensor:
        """Op i on x, its parameter-free head taken from ``shared`` when possible."""
        return self._call(self._ops[i], self._splits[i], x, shared)

    @staticmethod
    def _call(op: nn.Module, split: HeadSplit | None, x: torch.Tensor, shared: SharedInput | None) -> torch.Tensor:
        """op(x), its declared parameter-free head taken from ``shared`` when possible."""
        if shared is None or split is None:
            return op(x)
        y = shared.get(split.key, split.head)
        return y if split.tail is None else split.tail(y)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None,
             shared: SharedInput | None, kept: Sequence[int] | None = None) -> torch.Tensor:
        if index is not None:
            out = self._run(index, x, shared)
            if weights is None:
                return out
            weights = weights.to(out.dtype)  # bf16 under autocast; gradients still reach the fp32 alphas
            # NB201 search_cells.py forward_gdas also adds the other ops' (zero) weights to the sum:
            # their value is dropped here, their gradient path d/dw_k = sum(dL/dout) is kept.
            rest = weights.sum() - weights[index]
            return weights[index] * out + (rest - rest.detach())
        out = None
        for i in self._active if self.fast else range(len(self._ops)):
            if kept is not None and i not in kept:
                continue
            y = self._run(i, x, shared)
            y = weights[i].to(y.dtype) * y
            out = y if out is None else out + y
        if out is None:  # every candidate is `none`
            return self._ops[0](x)
        return out

    def widen(self, partial_channels: int, generator: torch.Generator) -> dict[nn.Parameter, tuple]:
        """Rebuild the ops for C / ``partial_channels`` channels, fewer partial channel groups than now (DrNAS's
        progressive learning, net2wider.py), each old tensor copied in and new channels copied from random old ones
        (``darts.widening``); returns {new parameter: (old parameter, channel maps)} for carrying optimizer state."""
        if self.C % partial_channels or self.k % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide C={self.C} and the current K={self.k}")
        old_ops, self.k = self._ops, partial_channels
        like = next(old_ops.parameters(), None)
        self._ops = nn.ModuleList(self._factory[name](self.C // partial_channels, self.stride, False)
                                  for name in self.primitives)
        if like is not None:
            self._ops.to(like.device)
            if any(p.dim() == 4 and is_channels_last(p) for p in old_ops.parameters()):
                self._ops.to(memory_format=torch.channels_last)
        self._splits = [head_split(op) for op in self._ops]
        widened = {}
        for old, new in zip(old_ops, self._ops):
            maps = widen_like(old, new, generator)
            widened.update({b: (a, maps) for a, b in zip(old.parameters(), new.parameters())})
        return widened


class CellDAG(nn.Module):
    """The edges of a cell: node j = sum over earlier states i of edge (i, j) applied to state i.

    Edges are ordered by destination node, then source, as in DARTS model_search.py and the
    NAS-Bench-201 cells, so row e of a [E, K] weight matrix is edge e.
    """

    def __init__(self, num_inputs: int, num_nodes: int, make_edge: Callable[[int, int], nn.Module]):
        super().__init__()
        self.num_inputs = num_inputs
        self.num_nodes = num_nodes
        self.edges = nn.ModuleList()
        self.sources: list[int] = []
        for j in range(num_nodes):
            for i in range(num_inputs + j):
                self.edges.append(make_edge(i, j))
                self.sources.append(i)

    def forward(self, inputs: list[torch.Tensor], mixing: Mixing) -> list[torch.Tensor]:
        """Return all states (inputs, then the num_nodes intermediate nodes)."""
        states = list(inputs)
        shared = [SharedInput(s) for s in states]
        e = 0
        for _ in range(self.num_nodes):
            node = None
            for s, sh in zip(states, shared):
                w = None if mixing.weights is None else mixing.weights[e]
                y = self.edges[e](s, w, None if mixing.index is None else mixing.index[e], sh, mixing.skip_weight,
                                  None if mixing.kept is None else mixing.kept[e])
                if mixing.edge_weights is not None:
                    y = mixing.edge_weights[e].to(y.dtype) * y
                node = y if node is None else node + y
                e += 1
            states.append(node)
            shared.append(SharedInput(node))
        return states


class Supernet(nn.Module, ABC):
    """Base of every supernet: owns alphas [E, K] per cell type; subclasses implement ``logits``.

    ``runtime`` (``darts.context.Runtime``) is given when the supernet is built: its autocast dtype and
    memory format apply in ``forward``, its ``fast`` flag to the mixed ops the subclass builds, and
    ``SearchSpace.build_supernet`` places the finished network with ``runtime.place``.
    """

    def __init__(self, cell_types: Sequence[str], num_edges: int, primitives: Sequence[str],
                 runtime: Runtime = Runtime()):
        super().__init__()
        self.cell_types = tuple(cell_types)
        self.primitives = tuple(primitives)
        self.num_edges = num_edges
        # DARTS model_search.py _initialize_alphas: 1e-3 * randn
        self.alphas = nn.ParameterDict(
            {t: nn.Parameter(1e-3 * torch.randn(num_edges, len(self.primitives))) for t in self.cell_types}
        )
        self.runtime = runtime
        self.amp_dtype = runtime.amp_dtype  # e.g. torch.bfloat16: autocast inside forward; None = fp32

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alphas), one [E, K] tensor per cell type."""
        return [self.alphas[t] for t in self.cell_types]

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights: every parameter that is not an alpha."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def widen(self, partial_channels: int, generator: torch.Generator) -> dict[nn.Parameter, tuple]:
        """Every mixed op rebuilt for C / ``partial_channels`` channels (``MixedOp.widen``); returns {new parameter:
        (old parameter, channel maps)}."""
        widened = {}
        for op in [m for m in self.modules() if isinstance(m, MixedOp)]:
            widened.update(op.widen(partial_channels, generator))
        return widened

    def forward(self, x: torch.Tensor, mixing: dict[str, Mixing] | None = None) -> torch.Tensor:
        """Logits for x (B, 3, H, W); without mixing, the DARTS relaxation softmax(alphas)."""
        if mixing is None:
            mixing = {t: Mixing(F.softmax(self.alphas[t], dim=-1)) for t in self.cell_types}
        x = x.contiguous(memory_format=self.runtime.memory_format)
        # the mixing weights arrive in fp32 (computed outside); only the network runs in amp_dtype
        with autocast(x.device.type, self.amp_dtype):
            logits = self.logits(x, mixing)
        return logits if self.amp_dtype is None else logits.float()

    @abstractmethod
    def logits(self, x: torch.Tensor, mixing: dict[str, Mixing]) -> torch.Tensor:
        """Forward pass with the given mixing weights per cell type."""
