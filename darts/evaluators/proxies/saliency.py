"""Saliency proxies: pruning-at-initialisation scores of the weights, summed over the network.

Abdelfattah, Mehrotra, Dudziak, Lane, "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, sec. 3 (official code
mohsaied/zero-cost-nas foresight/pruners/measures/*.py; NASLib naslib/predictors/utils/pruners/measures/*.py holds
the same definitions). Each sums over the weights of every Conv2d and Linear layer (p_utils.py
get_layer_metric_array; predictive.py find_measures sums the per-layer arrays), L the mean cross-entropy of the
batch (NB201 graph.py get_loss_fn: F.cross_entropy), on a training-mode copy of the network (BN on batch
statistics), the whole batch at once (the reference's split_data=1; it splits only after a CUDA out-of-memory):

- ``synflow`` (Tanaka et al., NeurIPS 2020): S = sum |theta * dR/dtheta|, R = 1^T f(1) the summed logits of the
  network with every parameter replaced by its absolute value, BN removed, in float64, on one all-ones image
  (measures/synflow.py, registered with bn=False: predictive.py no_op);
- ``grad_norm``: sum over layers of ||dL/dW||_2 (measures/grad_norm.py);
- ``snip`` (Lee et al., ICLR 2019): sum |theta * dL/dtheta| (measures/snip.py: |dL/dmask| at mask = 1);
- ``plain``: sum theta * dL/dtheta, signed (measures/plain.py);
- ``grasp`` (Wang et al., ICLR 2020): -sum theta * (H g), g = dL/dtheta and H the Hessian of L over the weights
  (measures/grasp.py, T = 1, num_iters = 1; its sign flipped as there);
- ``fisher`` (Theis et al. 2018, Turner et al. 2020): per output channel k of a layer with activations a (its
  output) and g = dL/da, F_k = 1/2 mean_n (sum_spatial a_nk g_nk)^2; the score sums |F_k| once per weight of the
  channel, i.e. times the channel's fan-in (measures/fisher.py; reshape_elements broadcasts F_k over
  weight.shape[1:]).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the proxies sum over: every Conv2d and Linear (p_utils.py get_layer_metric_array)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _weight_grads(net: nn.Module, output: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weights of ``weighted_layers(net)`` and the gradients of ``output`` (a scalar) with respect to them
    (zero for a layer ``output`` does not depend on, as the reference's zeros_like)."""
    weights = [m.weight for m in weighted_layers(net)]
    grads = torch.autograd.grad(output, weights, allow_unused=True)
    return weights, [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


def loss_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The Conv2d/Linear weights of a training-mode copy of ``net`` and the gradients of its cross-entropy on the
    batch (x, y) (measures/grad_norm.py, snip.py and plain.py: loss_fn = F.cross_entropy)."""
    net = copy.deepcopy(net).train()
    return _weight_grads(net, F.cross_entropy(net(x), y))


@torch.no_grad()
def saliency(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    """sum |w * g| over all weights (the snip and synflow sums)."""
    return float(sum((w * g).abs().sum() for w, g in zip(weights, grads)))


@torch.no_grad()
def signed_saliency(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    """sum w * g over all weights, without absolute values (the plain sum)."""
    return float(sum((w * g).sum() for w, g in zip(weights, grads)))


@torch.no_grad()
def norm_sum(grads: list[torch.Tensor]) -> float:
    """Sum of the per-layer L2 norms of the gradients (the grad_norm sum)."""
    return float(torch.stack([g.norm() for g in grads]).sum())


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear layers of the L2 norm of the loss gradient of the layer's weight."""
    return norm_sum(loss_gradients(net, x, y)[1])


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear weights of |weight * dL/dweight| (SNIP's connection sensitivity)."""
    return saliency(*loss_gradients(net, x, y))


def plain(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear weights of weight * dL/dweight (snip without the absolute value)."""
    return signed_saliency(*loss_gradients(net, x, y))


def grasp(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """-sum theta * (H g) over Conv2d/Linear weights: H the Hessian of the loss, g its gradient (held constant).

    The reference runs two identical forward passes (the first for g, the second with create_graph); with BN on
    batch statistics both give the same graph, so one pass with create_graph serves both."""
    net = copy.deepcopy(net).train()
    weights = [m.weight for m in weighted_layers(net)]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights, create_graph=True, allow_unused=True)
    used = [(w, g) for w, g in zip(weights, grads) if g is not None]  # grasp.py skips layers without a gradient
    if not used:
        return 0.0
    z = sum((g.detach() * g).sum() for _, g in used)  # grasp.py: (grad_w.data * grad_f).sum() over layers
    hessian_grads = torch.autograd.grad(z, [w for w, _ in used], allow_unused=True)
    return float(-sum((w.detach() * hg).sum() for (w, _), hg in zip(used, hessian_grads) if hg is not None))


def fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear output channels of |F_k| * fan-in, F_k = 1/2 mean_n (sum_spatial a * dL/da)^2.

    The reference replaces each layer's forward to pass its output through an identity with a backward hook; here a
    forward hook keeps each layer's output a (the same tensor) and one autograd.grad gives dL/da for all of them. A
    layer called twice adds one F_k term per call (the reference supports one call per layer)."""
    net = copy.deepcopy(net).train()
    layers = weighted_layers(net)
    calls: list[tuple[int, torch.Tensor]] = []  # (layer index, its output) per call, in call order
    hooks = [layer.register_forward_hook(lambda m, i, out, k=k: calls.append((k, out)))
             for k, layer in enumerate(layers)]
    loss = F.cross_entropy(net(x), y)
    for hook in hooks:
        hook.remove()
    grads = torch.autograd.grad(loss, [out for _, out in calls], allow_unused=True)
    per_channel = [layer.weight.new_zeros(layer.weight.shape[0]) for layer in layers]  # [C_out] per layer
    for (k, out), grad in zip(calls, grads):
        if grad is None:  # the layer's output does not reach the loss: the reference's hook never fires
            continue
        product = (out.detach() * grad).flatten(2).sum(2) if out.dim() > 2 else out.detach() * grad  # [B, C_out]
        per_channel[k] += 0.5 * product.pow(2).mean(0)
    return float(sum(f.abs().sum() * layer.weight[0].numel() for f, layer in zip(per_channel, layers)))


def _without_batchnorm(net: nn.Module) -> nn.Module:
    """``net`` with every BatchNorm replaced by the identity (predictive.py copynet(bn=False): forward = no_op)."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return net


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Synaptic flow of a float64 copy with |parameters| and no BN, on one all-ones image shaped like ``x[0]``."""
    net = _without_batchnorm(copy.deepcopy(net).train()).double()
    with torch.no_grad():
        for tensor in net.state_dict().values():  # measures/synflow.py linearize: abs of the whole state_dict
            tensor.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)  # (1, 3, H, W)
    return saliency(*_weight_grads(net, net(ones).sum()))
