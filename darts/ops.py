"""DARTS candidate operations (primitives) and the `OPS` factory table.

Layer order, kernel/padding/dilation choices, bias-free convolutions and BatchNorm placement follow
the DARTS reference code (quark0/darts, cnn/operations.py) exactly, so parameter counts and
state_dict keys (e.g. `op.1.weight`) match it.
"""

from typing import Callable

import torch
import torch.nn as nn


class ReLUConvBN(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the op: (B, C_in, H, W) -> (B, C_out, H', W')."""
        return self.op(x)


class DilConv(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the op: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        return self.op(x)


class SepConv(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the op: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""
        return self.op(x)


class Identity(nn.Module):
    """Identity (skip_connect at stride 1); the discrete cell never drop-paths it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the input unchanged: (B, C, H, W) -> (B, C, H, W)."""
        return x


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

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the leading ReLU (the supernet shares that ReLU between edges)."""
        a = self.conv_1(x)  # (B, C_out/2, H/2, W/2)
        b = self.conv_2(x[:, :, 1:, 1:])  # (B, C_out/2, H/2, W/2)
        return self.bn(torch.cat([a, b], dim=1))  # (B, C_out, H/2, W/2)


def _conv_7x1_1x7(C: int, stride: int, affine: bool) -> nn.Sequential:
    """ReLU -> (1,7) conv -> (7,1) conv -> BN, striding W then H, as DARTS cnn/operations.py."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


def _skip_connect(C: int, stride: int, affine: bool) -> nn.Module:
    """Identity at stride 1, FactorizedReduce at stride 2 (DARTS cnn/operations.py)."""
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


# name -> factory(C, stride, affine); every op maps C channels to C channels.
# Paddings keep "same" spatial size at stride 1 (DARTS cnn/operations.py).
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": _skip_connect,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
    "conv_7x1_1x7": _conv_7x1_1x7,
}
