"""The DARTS space's primitives and its op table (DARTS cnn/operations.py ``OPS``, cnn/genotypes.py ``PRIMITIVES``).

The op modules are the shared ones of ``darts.ops``; this file names them as the DARTS papers do.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from darts.ops import (AvgPool, DilConv, FactorizedReduce, Identity, MaxPool, Noise, PoolBN, ReLUSequential, SepConv,
                       Zero)

OpFactory = Callable[[int, int, bool], nn.Module]

# cnn/genotypes.py, in the paper's order (index 0 is `none`)
PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def _conv_7x1_1x7(C: int, stride: int, affine: bool) -> nn.Sequential:
    """ReLU -> (1,7) conv -> (7,1) conv -> BN, striding W then H, as DARTS cnn/operations.py."""
    return ReLUSequential(
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
OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "noise": lambda C, stride, affine: Noise(stride),  # RobustDARTS src/operations.py (S4)
    "avg_pool_3x3": lambda C, stride, affine: AvgPool(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: MaxPool(3, stride=stride, padding=1),
    "skip_connect": _skip_connect,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


def _with_pool_bn(name: str, make: OpFactory) -> OpFactory:
    """DARTS model_search.py MixedOp: a pool in the search cell is followed by an affine-free BN."""
    if "pool" not in name:
        return make
    return lambda C, stride, affine: PoolBN(make(C, stride, affine), C)


SEARCH_OPS: dict[str, OpFactory] = {name: _with_pool_bn(name, make) for name, make in OPS.items()}
