"""Size proxies: the network's weight norm, FLOPs and parameter count (no gradient, no labels).

- ``l2_norm``: sum over Conv2d and Linear layers of the Frobenius norm of the weight, of the network as given (NASLib
  naslib/predictors/utils/pruners/measures/l2_norm.py, registered with copy_net=False);
- ``flops`` and ``params``: NASLib predictive.py find_measures counts them with tensorwatch's ModelStats
  (measures/model_stats.py) on one input shaped like one image of the batch, in megaFLOPs and millions. ModelStats
  (microsoft/tensorwatch model_graph/torchstat_utils.py, torchstat/analyzer.py) puts a forward hook on every leaf
  module (one without children) of an eval-mode copy, runs one forward pass, keeps each leaf's last call, and sums
  over the leaves that ran: parameters, the numel of the leaf's own parameters; FLOPs, by the rules of
  torchstat/compute_flops.py (a multiply-add counts 1):

  | leaf | FLOPs |
  | --- | --- |
  | Conv2d | k_h k_w C_in (C_out / groups) B H_out W_out, plus C_out B H_out W_out with a bias |
  | BatchNorm2d | the input's numel, twice with affine parameters |
  | AvgPool2d, MaxPool2d | B C W_o H_o k_0 k_1, W_o = floor((W + 2 p_0 - k_0) / s_0 + 1), H_o with p_1, k_1, s_0 |
  | AdaptiveAvgPool2d, AdaptiveMaxPool2d | sum over output cells of B C (y_end - y_start + 1)(x_end - x_start + 1) |
  | ReLU, ReLU6, PReLU, ELU, LeakyReLU | the input's numel |
  | Upsample | B H_out W_out |
  | Linear | B in_features out_features |
  | any other | 0 |
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn as nn

from darts.evaluators.proxies.saliency import weighted_layers

MEGA = 1e6  # predictive.py find_measures: float(model_stats.Flops) / 1e6 (megaflops), parameters / 1e6


def l2_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear layers of the Frobenius norm of the weight (no data used)."""
    with torch.no_grad():
        return float(sum(layer.weight.norm() for layer in weighted_layers(net)))


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    """An int hyper-parameter as (v, v) (compute_flops.py: ``'int' in str(type(...))``), a tuple as given."""
    return (value, value) if isinstance(value, int) else tuple(value)


def _conv_flops(m: nn.Conv2d, x: torch.Tensor, out: torch.Tensor) -> int:
    positions = out.shape[0] * out.shape[2] * out.shape[3]  # B H_out W_out
    per_position = m.kernel_size[0] * m.kernel_size[1] * x.shape[1] * (out.shape[1] // m.groups)
    return per_position * positions + (out.shape[1] * positions if m.bias is not None else 0)


def _pool_flops(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    (k0, k1), (s0, _), (p0, p1) = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    width = math.floor((x.shape[3] + 2 * p0 - k0) / float(s0) + 1)
    height = math.floor((x.shape[2] + 2 * p1 - k1) / float(s0) + 1)  # compute_Pool2d_flops: stride[0] for both
    return x.shape[0] * x.shape[1] * width * height * k0 * k1


def _adaptive_pool_flops(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    height, width = x.shape[2], x.shape[3]
    flops = 0
    for i in range(out.shape[2]):
        rows = math.ceil((i + 1) * height / out.shape[2]) - math.floor(i * height / out.shape[2]) + 1
        for j in range(out.shape[3]):
            columns = math.ceil((j + 1) * width / out.shape[3]) - math.floor(j * width / out.shape[3]) + 1
            flops += x.shape[0] * x.shape[1] * rows * columns
    return flops


FlopRule = Callable[[nn.Module, torch.Tensor, torch.Tensor], int]
# compute_flops.py compute_flops, in its order (the first matching type counts)
FLOP_RULES: tuple[tuple[tuple[type, ...], FlopRule], ...] = (
    ((nn.Conv2d,), _conv_flops),
    ((nn.BatchNorm2d,), lambda m, x, out: x.numel() * (2 if m.affine else 1)),
    ((nn.AvgPool2d, nn.MaxPool2d), _pool_flops),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), _adaptive_pool_flops),
    ((nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU), lambda m, x, out: x.numel()),
    ((nn.Upsample,), lambda m, x, out: out.shape[0] * math.prod(out.shape[2:])),
    ((nn.Linear,), lambda m, x, out: x.shape[0] * x.shape[1] * out.shape[1]),
)


def leaf_flops(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """FLOPs of one call of a leaf ``module`` with first input ``x`` and first output ``out`` (0 for other types)."""
    return next((rule(module, x, out) for types, rule in FLOP_RULES if isinstance(module, types)), 0)


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors of a (nested) input or output, in order (analyzer.py _flatten)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@torch.no_grad()
def leaf_counts(net: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """(FLOPs, parameters) of each leaf module of an eval-mode copy of ``net`` that runs on one image shaped like
    ``x[0]``, from its last call (analyzer.py: the forward hook overwrites; a leaf that never runs is absent)."""
    net = copy.deepcopy(net).eval()
    counts: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            parameters = sum(p.numel() for p in module.parameters())
            counts[name] = (leaf_flops(module, _tensors(inputs)[0], _tensors(output)[0]), parameters)
        return hook

    for name, module in net.named_modules():
        if next(module.children(), None) is None:  # a leaf
            module.register_forward_hook(record(name))
    net(x[:1])  # (1, 3, H, W): find_measures sets the batch dimension to 1; the values do not change the counts
    return counts


def flops(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Millions of FLOPs of one image, by tensorwatch's per-leaf rules (a multiply-add counts 1)."""
    return sum(f for f, _ in leaf_counts(net, x).values()) / MEGA


def params(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Millions of parameters of the leaf modules that run in a forward pass of one image."""
    return sum(p for _, p in leaf_counts(net, x).values()) / MEGA
