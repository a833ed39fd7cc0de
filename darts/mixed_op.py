"""The mixed op of an edge, sum_k w_k * op_k(x) (DARTS, Liu et al., ICLR 2019, eq. 2), and what it is composed with:
the parameter-free work shared between the edges leaving one state (``SharedInput``, the fast path), PC-DARTS's
partial channel connections (``PartialChannels``), DARTS-'s auxiliary skip, and the widening of partial-channel ops
between DrNAS's progressive stages.

Widening (Chen et al., ICLR 2021, sec. 3.3; xiangning-chen/DrNAS net2wider.py): every tensor of the narrow module is
copied into the matching tensor of the wide one; the first channels keep their values, and each new channel is a copy
of a randomly chosen old channel (net2wider.py ``InChannelWider``, ``OutChannelWider``, ``BNWider``: ``weight[:,
index]`` / ``weight[index]`` appended). Here one random choice is made per module and channel count and used on every
tensor and dimension of that size, so a conv's new output channel and the BN channel after it copy the same old
channel. A momentum buffer is carried the same way (net2wider.py ``configure_optimizer``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.checkpointing import Term, norm_sum, norms_plain
from darts.context import Context
from darts.ops import FactorizedReduce, Identity, Zero, head_split

OpTable = Mapping[str, Callable[[int, int, bool], nn.Module]]  # name -> factory(C, stride, affine)


ChannelMaps = dict[tuple[int, int], torch.Tensor]  # (old count, new count) -> [new count] old channel of each


def widen_like(old: nn.Module, new: nn.Module, generator: torch.Generator) -> ChannelMaps:
    """Copy ``old``'s parameters and buffers into ``new`` (same structure, wider channels) in place; returns the
    channel maps used, for ``carry``."""
    pairs = list(zip(old.state_dict(keep_vars=True).values(), new.state_dict(keep_vars=True).values()))
    maps: ChannelMaps = {}
    for a, b in pairs:
        for n_old, n_new in zip(a.shape, b.shape):
            if n_old != n_new and (n_old, n_new) not in maps:
                if n_new < n_old:
                    raise ValueError(f"cannot widen {n_old} channels to {n_new}")
                extra = torch.randint(n_old, (n_new - n_old,), generator=generator)
                maps[n_old, n_new] = torch.cat([torch.arange(n_old), extra])  # [n_new]
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(carry(a.detach(), b.shape, maps))
    return maps


def carry(t: torch.Tensor, shape: torch.Size, maps: ChannelMaps) -> torch.Tensor:
    """``t`` widened to ``shape``: along every dimension whose size differs, the channels the map chooses."""
    for d, (n_old, n_new) in enumerate(zip(t.shape, shape)):
        if n_old != n_new:
            t = t.index_select(d, maps[n_old, n_new].to(t.device))
    return t


def carry_optimizer(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter],
                    widened: dict[nn.Parameter, tuple[nn.Parameter, ChannelMaps]]) -> torch.optim.Optimizer:
    """A new optimizer of the same kind and settings (learning rate included) over ``params``, with the state of
    each parameter carried over: unchanged parameters keep theirs, a widened one (``widened[new] = (old, maps)``)
    gets its old state's tensors widened (net2wider.py ``configure_optimizer``: momentum buffers)."""
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    new = type(optimizer)(list(params), **group)
    for p in new.param_groups[0]["params"]:
        old, maps = widened.get(p, (p, {}))
        state = optimizer.state.get(old)
        if state:
            new.state[p] = {k: carry(v, p.shape, maps) if torch.is_tensor(v) and v.shape == old.shape else v
                            for k, v in state.items()}
    return new


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
    """One input state and the parameter-free work on it (leading ReLU, pools, identity, PC-DARTS's channel
    split), each computed once and reused by every edge leaving that state (the fast path)."""

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


def run_op(op: nn.Module, x: torch.Tensor, shared: SharedInput | None) -> torch.Tensor:
    """op(x), its declared parameter-free head (``darts.ops.HeadSplit``) taken from ``shared`` when given."""
    split = None if shared is None else head_split(op)
    if split is None:
        return op(x)
    y = shared.get(split.key, split.head)
    return y if split.tail is None else split.tail(y)


def norm_input(op: nn.Module, x: torch.Tensor, shared: SharedInput) -> tuple[torch.Tensor, nn.BatchNorm2d | None]:
    """(z, norm) with op(x) == norm(z) when the op's tail ends in an affine-free batch norm; else (op(x), None)."""
    split = head_split(op)
    layers = list(split.tail) if split is not None and isinstance(split.tail, nn.Sequential) else \
        [None if split is None else split.tail]
    if isinstance(layers[-1], nn.BatchNorm2d) and not layers[-1].affine:
        y = shared.get(split.key, split.head)
        for layer in layers[:-1]:
            y = layer(y)
        return y, layers[-1]
    return run_op(op, x, shared), None


class MixedOp(nn.Module):
    """All candidate ops of one edge; output = sum_k w_k * op_k(x) (DARTS eq. 2; cnn/model_search.py ``MixedOp``).

    ``ops`` is the space's op table; search ops are built without affine BN parameters. ``fast`` (default): `none`
    (``darts.ops.Zero``) is never computed (it adds exactly zero, value and gradient) and the parameter-free heads
    come from a ``SharedInput``; ``fast=False`` is the reference's plain computation of every op. ``recompute_norms``
    (with ``fast``): the ops' last affine-free batch norms are recomputed in backward inside the weighted sum
    (``darts.checkpointing.norm_sum``) instead of their outputs being kept.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str], ops: OpTable, fast: bool = True,
                 recompute_norms: bool = False):
        super().__init__()
        self.C, self.stride, self.primitives, self.fast, self.table = C, stride, tuple(primitives), fast, ops
        self.recompute_norms = recompute_norms
        self._ops = nn.ModuleList(ops[name](C, stride, False) for name in self.primitives)
        self.computed = [k for k, op in enumerate(self._ops) if not (fast and isinstance(op, Zero))]

    def candidates(self) -> dict[str, nn.Module]:
        """The candidate ops by primitive name."""
        return dict(zip(self.primitives, self._ops))

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None,
                shared: SharedInput | None = None, kept: Sequence[int] | None = None) -> torch.Tensor:
        """Mix the ops on x (B, C, H, W) with weights [K]; ``index`` computes op ``index`` alone; ``kept`` only those
        ops (the others have weight 0); ``shared`` holds x's parameter-free heads (fast path)."""
        shared = shared if self.fast else None
        if index is not None:
            return self._single(x, weights, index, shared)
        computed = self.computed if kept is None else [k for k in self.computed if k in kept]
        lean = shared is not None and self.recompute_norms and torch.is_grad_enabled() and not norms_plain()
        if computed and lean:
            pairs = [norm_input(self._ops[k], x, shared) for k in computed]  # (z_k, norm_k)
            terms: list[Term] = [(k, norm) for k, (_, norm) in zip(computed, pairs)]
            return norm_sum(weights, terms, [z for z, _ in pairs])
        out = None
        for k in computed:
            y = run_op(self._ops[k], x, shared)
            y = weights[k].to(y.dtype) * y  # bf16 under autocast; gradients still reach the fp32 arch parameters
            out = y if out is None else out + y
        return self._ops[0](x) if out is None else out  # every candidate `none`: its zeros

    def _single(self, x: torch.Tensor, weights: torch.Tensor | None, index: int,
                shared: SharedInput | None) -> torch.Tensor:
        """Op ``index`` alone, scaled by its weight; the other ops' (zero) weights keep their gradient path, as NB201
        search_cells.py ``forward_gdas`` adds them to the sum: d/dw_k = sum(dL/dout)."""
        out = run_op(self._ops[index], x, shared)
        if weights is None:
            return out
        weights = weights.to(out.dtype)  # bf16 under autocast; gradients still reach the fp32 alphas
        rest = weights.sum() - weights[index]
        return weights[index] * out + (rest - rest.detach())


class PartialChannels(nn.Module):
    """PC-DARTS's partial channel connections (Xu et al., ICLR 2020, sec. 3.2; model_search.py ``MixedOp``): the
    first C/K channels go through a mixed op built for them, the rest bypass it (max-pooled at stride 2), then a
    channel shuffle."""

    def __init__(self, C: int, stride: int, k: int, primitives: Sequence[str], ops: OpTable, fast: bool = True,
                 recompute_norms: bool = False):
        super().__init__()
        if C % k:
            raise ValueError(f"partial_channels={k} must divide the channels C={C}")
        self.C, self.stride, self.k, self.fast = C, stride, k, fast
        self.mixed = MixedOp(C // k, stride, primitives, ops, fast, recompute_norms)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None,
                shared: SharedInput | None = None, kept: Sequence[int] | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H', W'): the mixed op on C/K channels, the others bypassing it, shuffled."""
        c = x.shape[1] // self.k
        if shared is None or not self.fast:
            mixed, rest = self.mixed(x[:, :c], weights, index, None, kept), self._bypass(x, c)
        else:
            part = shared.part(c)  # (B, C/K, H, W)
            mixed = self.mixed(part.x, weights, index, part, kept)
            rest = shared.get(("bypass", c, self.stride), lambda y: self._bypass(y, c))
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.k)

    def _bypass(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """The channels after the first c, max-pooled at stride 2 -> (B, C - c, H', W')."""
        return F.max_pool2d(x[:, c:], 2, 2) if self.stride == 2 else x[:, c:]

    def widen(self, k: int, generator: torch.Generator) -> dict[nn.Parameter, tuple]:
        """Rebuild the mixed op for C / ``k`` channels, fewer groups than now (DrNAS's progressive learning,
        net2wider.py), old tensors copied in and new channels copied from random old ones (``widen_like``);
        returns {new parameter: (old parameter, channel maps)} for carrying optimizer state."""
        if self.C % k or self.k % k:
            raise ValueError(f"partial_channels={k} must divide C={self.C} and the current K={self.k}")
        old, self.k = self.mixed, k
        new = MixedOp(self.C // k, old.stride, old.primitives, old.table, old.fast, old.recompute_norms)
        like = next(old.parameters(), None)
        if like is not None:
            new.to(like.device, memory_format=torch.channels_last if any(
                p.dim() == 4 and is_channels_last(p) for p in old.parameters()) else torch.contiguous_format)
        self.mixed = new
        widened = {}
        for a, b in zip(old._ops, new._ops):
            maps = widen_like(a, b, generator)
            widened.update({q: (p, maps) for p, q in zip(a.parameters(), b.parameters())})
        return widened


def mixed_op(C: int, stride: int, primitives: Sequence[str], ops: OpTable, partial_channels: int = 1,
             context: Context = Context()) -> nn.Module:
    """An edge's mixed op: over all C channels, or C/K of them for ``partial_channels`` K > 1 (PC-DARTS); the
    context's fast path and memory setting."""
    if partial_channels == 1:
        return MixedOp(C, stride, primitives, ops, context.fast, context.recompute_norms)
    return PartialChannels(C, stride, partial_channels, primitives, ops, context.fast, context.recompute_norms)


def auxiliary_skip(C: int, stride: int) -> nn.Module:
    """DARTS-'s auxiliary skip (Meituan-AutoML/DARTS- model_search.py ``MixedOp``): the identity at stride 1, an
    affine-free FactorizedReduce of its own at stride 2 (the only parameters it adds)."""
    return FactorizedReduce(C, C, affine=False) if stride == 2 else Identity()
