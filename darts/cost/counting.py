"""Parameters and FLOPs of a built network, counted as NAS-Bench-201 and NATS-Bench count them.

FLOPs are multiply-accumulates of the convolutions and linear layers in one forward pass of one image, bias
included, pooling, normalisation and activations not counted (AutoDL-Projects xautodl/utils/flop_benchmark.py:
``conv_flops_counter_hook`` adds kh * kw * C_in / groups * C_out * H_out * W_out, plus C_out * H_out * W_out with a
bias; ``fc_flops_counter_hook`` in * out, plus out with a bias). ``torch.utils.flop_counter`` counts 2 per
multiply-add and no bias: that is twice these figures, less twice the bias terms. Parameters are every parameter
(NB201 ``count_parameters_in_MB``); auxiliary heads are the caller's to leave out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import torch
import torch.nn as nn

COUNTED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Count:
    """Parameters and multiply-accumulates (exact integers)."""

    params: int = 0
    flops: int = 0

    def __add__(self, other: Count) -> Count:
        return Count(self.params + other.params, self.flops + other.flops)

    def __sub__(self, other: Count) -> Count:
        return Count(self.params - other.params, self.flops - other.flops)


def layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv2d (output (1, C_out, H, W)) or Linear (output (1, out)) call, bias included."""
    if isinstance(module, nn.Conv2d):
        positions = output.shape[-1] * output.shape[-2]
        return module.weight.numel() * positions + (output.shape[-3] * positions if module.bias is not None else 0)
    return module.weight.numel() + (module.out_features if module.bias is not None else 0)


@torch.no_grad()
def count(model: nn.Module, x: torch.Tensor, groups: Mapping[Hashable, Sequence[nn.Module]] | None = None,
          ) -> tuple[Count, dict[Hashable, Count]]:
    """Count ``model`` on one eval-mode forward pass of ``x`` (1, 3, H, W): the total, and the share of each group
    of modules (the modules and everything inside them; a module in no group counts in the total only).

    Returns:
        (total, {group key: its count}); every module's own parameters count once, wherever it is reached from.
    """
    owner = {}
    for key, modules in (groups or {}).items():
        for top in modules:
            for m in top.modules():
                owner[m] = key
    parts = {key: Count() for key in groups or {}}
    flops = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        flops[module] = flops.get(module, 0) + layer_flops(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, COUNTED)]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    total = Count()
    for m in model.modules():  # modules() yields each module once, so shared modules count once
        own = Count(sum(p.numel() for p in m.parameters(recurse=False)), flops.get(m, 0))
        total = total + own
        if m in owner:
            parts[owner[m]] = parts[owner[m]] + own
    return total, parts


def count_parameters(model: nn.Module) -> int:
    """Number of parameters outside the auxiliary head (DARTS cnn/utils.py count_parameters_in_MB)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)


def count_network(model: nn.Module, x: torch.Tensor) -> Count:
    """Parameters (auxiliary head left out) and FLOPs of a network on one image ``x`` (1, 3, H, W)."""
    total, _ = count(model, x)
    return Count(count_parameters(model), total.flops)


def in_millions(counted: Count) -> dict[str, float]:
    """``{"params": ..., "flops": ...}`` in millions, as result.json and NAS-Bench-201 report them."""
    return {"params": counted.params / 1e6, "flops": counted.flops / 1e6}
