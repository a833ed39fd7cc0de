"""Size and cost of a network: parameters (without auxiliary heads) and FLOPs of one forward pass."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters outside the auxiliary head (DARTS cnn/utils.py count_parameters_in_MB)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass of ``x`` (1, 3, H, W), by ``torch.utils.flop_counter``
    (convolutions and matrix products; a multiply-add counts 2)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())
