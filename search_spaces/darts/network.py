"""Discrete (retraining) networks of the DARTS space, built from a genotype.

Follows the DARTS reference code (quark0/darts, cnn/model.py and cnn/utils.py) layer for layer so
that parameter counts match it (e.g. DARTS_V2 at 36 channels / 20 layers: 3,349,342 without the
auxiliary head, the "3.3M" of the DARTS paper, Table 1).

A genotype is any object with attributes `normal`, `normal_concat`, `reduce`, `reduce_concat`,
where `normal`/`reduce` are sequences of (op name, input index) pairs, two per intermediate node.
"""

from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from darts.ops import FactorizedReduce, Identity, ReLUConvBN
from search_spaces.darts.ops import OPS


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest by 1/keep_prob.

    DARTS cnn/utils.py `drop_path`: one Bernoulli(keep_prob) draw per sample. Computed out of place
    (the reference works in place) so that it is safe whatever op produced `x`.
    Args: x (B, C, H, W); drop_prob in [0, 1).
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    if drop_prob == 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = x.new_empty(x.size(0), 1, 1, 1).bernoulli_(keep_prob)  # (B, 1, 1, 1)
    return x.div(keep_prob).mul(mask)  # (B, C, H, W)


class Cell(nn.Module):
    """A discrete normal or reduction cell: each node sums two ops applied to earlier states.

    Args: genotype (normal/reduce pairs and concat lists); C_prev_prev, C_prev: channels of the
    two inputs; C: channels of every node; reduction: this cell halves H, W; reduction_prev: the
    previous cell did (so s0 has twice s1's resolution).
    """

    def __init__(
        self,
        genotype: Any,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        # The previous cell reduced, so s0 is at twice s1's resolution: FactorizedReduce aligns it.
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        self.reduction = reduction
        cell_type = "reduce" if reduction else "normal"
        pairs = list(getattr(genotype, cell_type))
        concat = list(getattr(genotype, f"{cell_type}_concat"))
        _check_cell(pairs, concat, cell_type)
        self._steps = len(pairs) // 2
        self._concat = concat
        self.multiplier = len(concat)
        self._indices = [int(index) for _, index in pairs]
        # Only edges from the two cell inputs are strided in a reduction cell (DARTS cnn/model.py).
        self._ops = nn.ModuleList(
            OPS[name](C, 2 if reduction and index < 2 else 1, True) for name, index in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        """Cell output (B, multiplier*C, H', W') from s0 (B, C_prev_prev, ., .) and s1 (B, C_prev, H, W)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (B, C, H, W)
        for i in range(self._steps):
            h1 = self._edge(2 * i, states, drop_prob)  # (B, C, H', W')
            h2 = self._edge(2 * i + 1, states, drop_prob)  # (B, C, H', W')
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self._concat], dim=1)  # (B, multiplier*C, H', W')

    def _edge(self, j: int, states: list[torch.Tensor], drop_prob: float) -> torch.Tensor:
        """Apply op j to its input state; drop path in training on every op but Identity."""
        op = self._ops[j]
        h = op(states[self._indices[j]])  # (B, C, H', W')
        if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
            h = drop_path(h, drop_prob)
        return h


def _check_cell(pairs: Sequence[Any], concat: Sequence[int], cell_type: str) -> None:
    """Raise ValueError if a cell's (op, input) pairs or concat list cannot be built."""
    if len(pairs) == 0 or len(pairs) % 2 != 0:
        raise ValueError(f"{cell_type} cell needs two (op, input) pairs per node, got {len(pairs)} pairs")
    for k, (name, index) in enumerate(pairs):
        if name not in OPS:
            raise ValueError(
                f"unknown op {name!r} in {cell_type} cell; valid ops: {sorted(OPS)}"
            )
        # Node k//2 may read the two cell inputs and the nodes before it.
        if not 0 <= int(index) < 2 + k // 2:
            raise ValueError(
                f"input {index} of op {k} in {cell_type} cell out of range; valid: 0..{1 + k // 2}"
            )
    n_states = 2 + len(pairs) // 2
    if len(concat) == 0 or any(not 0 <= int(i) < n_states for i in concat):
        raise ValueError(f"{cell_type}_concat {list(concat)} must be non-empty within 0..{n_states - 1}")


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on an 8x8 feature map (DARTS cnn/model.py)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # The reference's first ReLU is in place, which rewrites the cell output that the next
            # cells also read; they all start with a ReLU, so out of place gives identical values.
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) from features (B, C, 8, 8)."""
        x = self.features(x)  # (B, 768, 1, 1)
        return self.classifier(x.flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """Auxiliary classifier on a 7x7 feature map (DARTS cnn/model.py)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # out of place: see AuxiliaryHeadCIFAR
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),  # 7x7 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
            # No BatchNorm2d(768) here: the reference omits it, matching the paper's experiments.
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) from features (B, C, 7, 7)."""
        x = self.features(x)  # (B, 768, 1, 1)
        return self.classifier(x.flatten(1))


def _build_cells(
    genotype: Any, C: int, C_stem: int, layers: int, reduction_prev: bool
) -> tuple[nn.ModuleList, int, int]:
    """Stack `layers` cells, reducing at layers//3 and 2*layers//3 (DARTS cnn/model.py).

    Returns the cells, the channels after the auxiliary-head cell, and the final channels.
    """
    cells = nn.ModuleList()
    C_prev_prev, C_prev, C_curr = C_stem, C_stem, C
    C_aux = C_prev
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            C_curr *= 2
        cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
        reduction_prev = reduction
        cells.append(cell)
        C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
        if i == 2 * layers // 3:
            C_aux = C_prev
    return cells, C_aux, C_prev


def _cells_and_head(net: nn.Module, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The cells from the stem's outputs, the auxiliary head after cell 2*layers//3 (in training), pooling and
    the classifier (DARTS cnn/model.py NetworkCIFAR/NetworkImageNet forward): (logits, logits_aux or None)."""
    logits_aux = None
    for i, cell in enumerate(net.cells):
        s0, s1 = s1, cell(s0, s1, net.drop_path_prob)
        if i == 2 * net._layers // 3 and net._auxiliary and net.training:
            logits_aux = net.auxiliary_head(s1)
    out = net.global_pooling(s1)  # (B, C_prev, 1, 1)
    return net.classifier(out.flatten(1)), logits_aux


def _check_sizes(C: int, layers: int) -> None:
    """Raise ValueError for non-positive channel or layer counts."""
    if C < 1:
        raise ValueError(f"C must be a positive integer, got {C}")
    if layers < 1:
        raise ValueError(f"layers must be a positive integer, got {layers}")


class NetworkCIFAR(nn.Module):
    """DARTS evaluation network for 32x32 inputs (DARTS cnn/model.py NetworkCIFAR).

    Set `drop_path_prob` (the trainer does so each epoch); forward returns (logits, logits_aux),
    logits_aux being None unless training with `auxiliary`.
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool = False, genotype: Any = None) -> None:
        super().__init__()
        _check_sizes(C, layers)
        if genotype is None:
            raise ValueError(f"{type(self).__name__} needs a genotype")
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        C_stem = 3 * C  # stem multiplier 3
        self.stem = nn.Sequential(
            nn.Conv2d(3, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        self.cells, C_aux, C_prev = _build_cells(genotype, C, C_stem, layers, reduction_prev=False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits (B, num_classes) and auxiliary logits (B, num_classes) or None, from (B, 3, 32, 32)."""
        s0 = s1 = self.stem(x)  # (B, 3C, 32, 32)
        return _cells_and_head(self, s0, s1)


class NetworkImageNet(nn.Module):
    """DARTS evaluation network for 224x224 inputs (DARTS cnn/model.py NetworkImageNet).

    Same interface as NetworkCIFAR; the final AvgPool2d(7) requires 224x224 inputs.
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool = False, genotype: Any = None) -> None:
        super().__init__()
        _check_sizes(C, layers)
        if genotype is None:
            raise ValueError(f"{type(self).__name__} needs a genotype")
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            # Out of place: stem0's output is also s0 for the first cell (reference: in place, same values).
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        # s0 is at twice s1's resolution, so the first cell treats it as after a reduction.
        self.cells, C_aux, C_prev = _build_cells(genotype, C, C, layers, reduction_prev=True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes)
        self.global_pooling = nn.AvgPool2d(7)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits (B, num_classes) and auxiliary logits or None, from (B, 3, 224, 224)."""
        s0 = self.stem0(x)  # (B, C, 56, 56)
        s1 = self.stem1(s0)  # (B, C, 28, 28)
        return _cells_and_head(self, s0, s1)
