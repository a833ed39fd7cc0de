"""Shared primitive ops, each declaring the parameter-free head the supernet may share between edges.

Layer order, kernel/padding/dilation choices, bias-free convolutions and BatchNorm placement follow
the DARTS reference code (quark0/darts, cnn/operations.py) exactly, so parameter counts and
state_dict keys (e.g. `op.1.weight`) match it. A space's op table (name -> factory) lives with the
space (``search_spaces.darts.OPS``, ``search_spaces.nb201.OPS``).

The fast path (``darts.supernet.MixedOp``) computes an op as ``tail(head(x))`` where ``head`` is
parameter-free and shared by every edge leaving the same input state. An op opts in by defining
``head_split()``; an op without it is computed whole (correct, merely not shared).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]


class HeadSplit(NamedTuple):
    """An op is ``tail(head(x))`` (``tail`` None: the head alone); ``head`` holds no parameters and computes
    the same function for every op declaring the same ``key``."""

    key: tuple
    head: Fn
    tail: Fn | None


@runtime_checkable
class SplitsHead(Protocol):
    """An op that declares its parameter-free head (see the module docstring)."""

    def head_split(self) -> HeadSplit:
        """The op as head and tail."""


def head_split(op: nn.Module) -> HeadSplit | None:
    """The op's declared split, or None (the op is then computed whole)."""
    return op.head_split() if isinstance(op, SplitsHead) else None


_RELU = ("relu",)


def _pool_key(pool: nn.Module) -> tuple:
    """Pools of equal type and hyper-parameters compute the same function."""
    return (type(pool).__name__, *sorted((k, v) for k, v in vars(pool).items() if not k.startswith("_") and k != "training"))


class AvgPool(nn.AvgPool2d):
    """nn.AvgPool2d that declares itself a shareable head (parameter-free)."""

    def head_split(self) -> HeadSplit:
        """All head, no tail."""
        return HeadSplit(_pool_key(self), self, None)


class MaxPool(nn.MaxPool2d):
    """nn.MaxPool2d that declares itself a shareable head (parameter-free)."""

    def head_split(self) -> HeadSplit:
        """All head, no tail."""
        return HeadSplit(_pool_key(self), self, None)


class PoolBN(nn.Sequential):
    """A pool followed by an affine-free BN (DARTS model_search.py MixedOp); state_dict keys ``0.``/``1.`` as there."""

    def __init__(self, pool: nn.Module, C: int):
        super().__init__(pool, nn.BatchNorm2d(C, affine=False))

    def head_split(self) -> HeadSplit:
        """The pool is shared; its BN stays per edge (so its running statistics stay exact)."""
        return HeadSplit(_pool_key(self[0]), self[0], self[1])


class ReLUSequential(nn.Sequential):
    """An nn.Sequential whose first layer is a ReLU, declared as the shareable head."""

    def head_split(self) -> HeadSplit:
        """ReLU head, the remaining layers as tail."""
        return HeadSplit(_RELU, F.relu, self[1:])


class _ReLUHeaded(nn.Module):
    """Base of ops whose ``self.op`` is an nn.Sequential starting with a ReLU."""

    op: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the op: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        return self.op(x)

    def head_split(self) -> HeadSplit:
        """The leading ReLU is the head; the rest of ``op`` the tail."""
        return HeadSplit(_RELU, F.relu, self.op[1:])


class ReLUConvBN(_ReLUHeaded):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d, as DARTS cnn/operations.py."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(_ReLUHeaded):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN (one pass), as DARTS cnn/operations.py."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=C_in, bias=False,
            ),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(_ReLUHeaded):
    """Two passes of ReLU -> depthwise -> pointwise -> BN; only the first depthwise is strided.

    DARTS cnn/operations.py: the first pass keeps C_in channels, the second maps to C_out.
    """

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_in, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class Identity(nn.Module):
    """Identity (skip_connect at stride 1); the discrete cell never drop-paths it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the input unchanged: (B, C, H, W) -> (B, C, H, W)."""
        return x

    def head_split(self) -> HeadSplit:
        """All head: the input itself."""
        return HeadSplit(("identity",), nn.Identity(), None)


class Zero(nn.Module):
    """The `none` op: zeros shaped like the (strided) input, as DARTS cnn/operations.py."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return zeros: (B, C, H, W) -> (B, C, ceil(H/stride), ceil(W/stride))."""
        # Multiplying by 0 (not torch.zeros) keeps the reference's autograd graph, dtype and device.
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """The `noise` op of RobustDARTS's S4 (Zela et al., ICLR 2020, sec. 3; src/operations.py ``NoiseOp`` with mean 0,
    std 1): a fresh standard-normal sample shaped like the (strided) input, independent of its values."""

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> noise (B, C, ceil(H/stride), ceil(W/stride)); no gradient reaches x, as the reference."""
        shape = x[:, :, :: self.stride, :: self.stride].shape
        return torch.empty(shape, dtype=x.dtype, device=x.device).normal_(self.mean, self.std)


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset stride-2 1x1 convs whose outputs are concatenated, then BN.

    DARTS cnn/operations.py: the second conv sees the input shifted by one pixel (`x[:, :, 1:, 1:]`)
    so the two halves sample complementary positions.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2 != 0:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the op: (B, C_in, H, W) -> (B, C_out, H/2, W/2) for even H, W."""
        return self.reduce(self.relu(x))

    def head_split(self) -> HeadSplit:
        """The leading ReLU is the head; ``reduce`` the tail."""
        return HeadSplit(_RELU, F.relu, self.reduce)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the leading ReLU (the supernet shares that ReLU between edges)."""
        a = self.conv_1(x)  # (B, C_out/2, H/2, W/2)
        b = self.conv_2(x[:, :, 1:, 1:])  # (B, C_out/2, H/2, W/2)
        return self.bn(torch.cat([a, b], dim=1))  # (B, C_out, H/2, W/2)
