"""The NATS-Bench size-space network (AutoDL-Projects xautodl/models/shape_infers/InferTinyCellNet.py
``DynamicShapeTinyNet``, built by ``get_cell_based_tiny_net`` for ``infer.shape.tiny``).

For channels c_1..c_5: a 3x3 conv + BN stem to c_1; then NB201 cells and stride-2 residual blocks alternating,
``InferCell(c_1 -> c_1)``, ``ResNetBasicblock(c_1 -> c_2)``, ``InferCell(c_2 -> c_3)``, ``ResNetBasicblock(c_3 -> c_4)``,
``InferCell(c_4 -> c_5)`` (N = 5 // 3 = 1 cell per stage); then BN-ReLU, global pooling and a classifier. Every cell
is the one NB201 cell the benchmark fixed (exps/NATS-Bench/main-sss.py: the best NB201 cell on CIFAR-100 validation,
``CELL``). A cell whose output width differs from its input's widens on the edges leaving node 0, with
xautodl/models/cell_operations.py ``OPS[op](C_in, C_out, stride=1)`` (``WIDE_OPS``). Module names are the reference's.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from search_spaces.nats_sss.genotype import ChannelGenotype, parse_channels
from search_spaces.nb201.genotype import NB201Genotype, parse_arch
from search_spaces.nb201.network import InferCell as NB201InferCell, head
from search_spaces.nb201.ops import OPS, ReLUConvBN, ResNetBasicblock

# main-sss.py: "the topology for all candidates in sss is fixed as" (arch-index 9930 of NB201)
CELL = parse_arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


class ZeroWide(nn.Module):
    """cell_operations.py ``Zero`` with C_in != C_out: zeros of C_out channels."""

    def __init__(self, C_out: int):
        super().__init__()
        self.C_out = C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W) zeros."""
        return x.new_zeros((x.shape[0], self.C_out, *x.shape[2:]))


class FactorizedReduce(nn.Module):
    """cell_operations.py ``FactorizedReduce`` at stride 1 (skip_connect that changes width): 1x1 conv, then BN."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 1, stride=1, padding=0, bias=False)  # bias=not affine, affine=True
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.bn(self.conv(x))


class Pooling(nn.Module):
    """cell_operations.py ``POOLING`` with C_in != C_out: a 1x1 ReLUConvBN to C_out, then 3x3 average pooling."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.preprocess = ReLUConvBN(C_in, C_out, 1, 1, 0)
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.op(self.preprocess(x))


# cell_operations.py OPS at stride 1 from C_in to C_out channels, C_in != C_out
WIDE_OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda C_in, C_out: ZeroWide(C_out),
    "skip_connect": FactorizedReduce,
    "nor_conv_1x1": lambda C_in, C_out: ReLUConvBN(C_in, C_out, 1, 1, 0),
    "nor_conv_3x3": lambda C_in, C_out: ReLUConvBN(C_in, C_out, 3, 1, 1),
    "avg_pool_3x3": Pooling,
}


class InferCell(NB201InferCell):
    """cell_infers/cells.py ``InferCell(genotype, C_in, C_out, stride=1)``: edges from node 0 map C_in to C_out
    (``WIDE_OPS`` where the widths differ), the others keep C_out; node 3 is the output."""

    def __init__(self, genotype: NB201Genotype, C_in: int, C_out: int):
        super().__init__(genotype, C_out, lambda op, j: WIDE_OPS[op](C_in, C_out) if j == 0 and C_in != C_out
                         else OPS[op](C_out, 1, True))


class DynamicShapeTinyNet(nn.Module):
    """The NATS size-space network of a channel genotype; forward returns logits only (the reference also returns
    the pooled features).

    Args:
        genotype: the 5 layers' channels (``ChannelGenotype`` or ``'c1:c2:c3:c4:c5'``).
        num_classes: classifier outputs.
        cell: the NB201 cell of every stage (the benchmark's ``CELL``).
    """

    def __init__(self, genotype: ChannelGenotype | str, num_classes: int = 10, cell: NB201Genotype = CELL):
        super().__init__()
        channels = parse_channels(genotype) if isinstance(genotype, str) else ChannelGenotype(genotype)
        self.genotype = channels
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], kernel_size=3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]))
        self.cells = nn.ModuleList()
        c_prev = channels[0]
        for layer, c in enumerate(channels):  # layers 1 and 3 (0-based) are the stride-2 residual blocks
            self.cells.append(ResNetBasicblock(c_prev, c) if layer % 2 else InferCell(cell, c_prev, c))
            c_prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes)."""
        h = self.stem(x)  # (B, c_1, H, W)
        for cell in self.cells:
            h = cell(h)  # (B, c_i, H', W')
        return head(self, h)

