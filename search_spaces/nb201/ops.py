"""The NAS-Bench-201 ops (AutoDL-Projects lib/models/cell_operations.py), each declaring its shareable head."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.ops import AvgPool, HeadSplit, Identity, Zero


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d -> BatchNorm2d, as NB201 cell_operations.py ReLUConvBN (attribute ``op``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            # AutoDL-Projects cell_operations.py since the NATS-Bench update: bias=not affine (the
            # ICLR-2020 file had bias=False; cf. NASLib PR #92). Discrete nets (affine) are unaffected.
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        return self.op(x)

    def head_split(self) -> HeadSplit:
        """The leading ReLU is the head, shared between edges (``darts.ops.HeadSplit``)."""
        return HeadSplit(("relu",), F.relu, self.op[1:])


def _skip_connect(stride: int) -> nn.Module:
    """Identity: NB201 cells never change resolution or width (their FactorizedReduce is unused)."""
    if stride != 1:
        raise ValueError(f"NB201 cell ops run at stride 1, got stride={stride}")
    return Identity()


OpFactory = Callable[[int, int, bool], nn.Module]


def nb201_ops(track_running_stats: bool = True) -> dict[str, OpFactory]:
    """The 5 NB201 ops as name -> factory(C, stride, affine), for ``MixedOp(ops=...)``.

    cell_operations.py OPS with C_in == C_out: `avg_pool_3x3` is POOLING without its preprocess
    conv and without a BN after it (the search cell adds none either).
    """
    t = track_running_stats
    return {
        "none": lambda C, stride, affine: Zero(stride),
        "skip_connect": lambda C, stride, affine: _skip_connect(stride),
        "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine, t),
        "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine, t),
        "avg_pool_3x3": lambda C, stride, affine: AvgPool(3, stride=stride, padding=1, count_include_pad=False),
    }


OPS = nb201_ops()  # the discrete network's ops (InferCell: affine, tracked BN)


class ResNetBasicblock(nn.Module):
    """The stride-2 residual block between stages (cell_operations.py ResNetBasicblock, stride 2)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                        nn.Conv2d(C_in, C_out, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
        return self.downsample(x) + self.conv_b(self.conv_a(x))
