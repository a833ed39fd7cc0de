"""Activation proxies: scores of the untrained network's activations, without a loss.

- ``naswot`` (Mellor et al., "Neural Architecture Search without Training", ICML 2021, sec. 3, eq. 2): c_i the binary
  code of image i (which units of every ReLU are active), K_H[i, j] = N_A - Hamming(c_i, c_j), score = log|K_H|
  (BayesWatch/nas-without-training score_networks.py: a forward hook on each ReLU that reaches the output adds
  c c^T + (1 - c)(1 - c)^T; scores.py hooklogdet);
- ``zen`` (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition", ICCV 2021, eq. 8-9;
  NASLib naslib/predictors/utils/pruners/measures/zen.py, from idstcv/ZenNAS compute_zen_score.py): with every
  Conv2d/Linear weight drawn from N(0, 1) (biases 0, BatchNorm2d/GroupNorm affine 1 and 0), f the features at the
  input of the global average pool, x and e Gaussian inputs shaped like the batch and gamma = 0.01,
  score = log E_n ||f(x) - f(x + gamma e)||_1 + sum over BatchNorm2d of log sqrt(mean running_var), the running
  variances those of BN in training mode after the two forward passes.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

ZEN_MIXUP_GAMMA = 1e-2  # zen.py compute_zen_score: mixup_gamma=1e-2
ZEN_SEED = 0  # the seed of zen's Gaussian weights and inputs (see ``zen``)


def naswot_score(kernel: torch.Tensor) -> float:
    """log|K_H| of the [B, B] kernel (-inf when singular); scores.py hooklogdet: np.linalg.slogdet's log|det|."""
    return float(torch.linalg.slogdet(kernel.double()).logabsdet)


def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K_H [B, B] = c c^T + (1 - c)(1 - c)^T = N_A - Hamming distance, of binary codes [B, N_A] (0/1 floats).

    Computed with one product: (1 - c)(1 - c)^T = N_A - s_i - s_j + c c^T, s the row sums (the active units)."""
    active = codes.sum(dim=1)  # [B]
    return 2 * (codes @ codes.T) + codes.shape[1] - active[:, None] - active[None, :]


def _graph_nodes(root: Any) -> set[Any]:
    """Every autograd node reachable backwards from ``root`` (a grad_fn)."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(fn for fn, _ in node.next_functions)
    return seen


def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log|K_H| of the batch's binary ReLU codes (a unit is 1 where the ReLU's input is positive), over the ReLUs on
    a path to the logits (score_networks.py counts a ReLU only once the backward pass has visited it)."""
    net = copy.deepcopy(net).train()
    terms: list[tuple[Any, torch.Tensor]] = []  # per ReLU call: (its output's autograd node, its K_H term [B, B])

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # an in-place ReLU has overwritten its input by now: relu(z) > 0 exactly where z > 0, so the code is the same
        codes = (inputs[0].detach().flatten(1) > 0).float()  # [B, units]; float32 sums of 0/1 are exact below 2^24
        terms.append((output.grad_fn, hamming_kernel(codes).double()))

    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(count)
    reached = _graph_nodes(net(x.detach().requires_grad_(True)).grad_fn)  # the reference's input requires grad too
    kernel = torch.zeros((len(x), len(x)), dtype=torch.float64, device=x.device)  # [B, B]
    for node, term in terms:
        if node in reached:
            kernel += term
    return naswot_score(kernel)


@torch.no_grad()
def gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    """zen.py network_weight_gaussian_init: Conv2d and Linear weights ~ N(0, 1) in module order, their biases 0;
    BatchNorm2d and GroupNorm with affine parameters set to 1 and 0. Draws on the CPU from ``generator``."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
            module.weight.fill_(1.0)
            module.bias.zero_()


def features_before_pooling(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input (B, C, H, W) of the network's global average pool on ``x`` (NASLib's forward_before_global_avg_pool:
    a forward hook on every AdaptiveAvgPool2d, which must be called exactly once)."""
    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
             for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    try:
        net(x)
    finally:
        for hook in hooks:
            hook.remove()
    if len(inputs) != 1:
        raise ValueError(f"proxy=zen needs a network that calls one global average pool (nn.AdaptiveAvgPool2d) "
                         f"once per forward; {type(net).__name__} called {len(inputs)}")
    return inputs[0]


def _bn_log_scale(net: nn.Module) -> torch.Tensor:
    """sum over BatchNorm2d of log sqrt(mean running_var) (zen.py: the BN scaling factor)."""
    total = torch.zeros(())
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            if module.running_var is None:
                raise ValueError(f"proxy=zen reads BatchNorm2d running variances; {name} has "
                                 "track_running_stats=False")
            total = total + torch.log(torch.sqrt(module.running_var.mean())).cpu()
    return total


@torch.no_grad()
def zen(net: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = ZEN_SEED) -> float:
    """Zen-score of a training-mode copy of ``net`` with Gaussian weights, on Gaussian inputs shaped like ``x``.

    NASLib draws the weights and the two inputs from torch's global generator in whatever state its caller left;
    here they come from a CPU generator seeded ``seed`` in the same order (weights in module order, then x, then
    e), so the value equals NASLib's zen run on the CPU right after ``torch.manual_seed(seed)``, and it depends only
    on the architecture and the batch's shape (the network's own weights are redrawn; ``y`` is unused)."""
    net = copy.deepcopy(net).train()
    generator = torch.Generator().manual_seed(seed)
    gaussian_init(net, generator)
    inputs = torch.randn(x.shape, generator=generator).to(x.device)  # (B, 3, H, W)
    noise = torch.randn(x.shape, generator=generator).to(x.device)  # (B, 3, H, W)
    features = features_before_pooling(net, inputs)  # (B, C, H', W')
    mixed = features_before_pooling(net, inputs + ZEN_MIXUP_GAMMA * noise)  # (B, C, H', W')
    distance = (features - mixed).abs().sum(dim=(1, 2, 3)).mean()  # zen.py: mean over images of the L1 norm
    return float(torch.log(distance).cpu() + _bn_log_scale(net))
