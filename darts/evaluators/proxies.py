"""Zero-cost proxies: a score of an untrained network from one batch of data (higher = predicted more accurate).

Abdelfattah, Mehrotra, Dudziak, Lane, "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, sec. 3 (official code
mohsaied/zero-cost-nas, foresight/pruners/measures/*.py), each summed over the weights of every Conv2d and
Linear layer (p_utils.py get_layer_metric_array; predictive.py find_measures sums the per-layer arrays):

- ``synflow`` (Tanaka et al., NeurIPS 2020): S = sum |theta * dR/dtheta|, R = 1^T f(1) the summed logits of the
  network with every parameter replaced by its absolute value, BN removed, in float64, on one all-ones image
  (measures/synflow.py, registered as ``synflow`` with bn=False; predictive.py no_op);
- ``grad_norm``: sum over layers of ||dL/dW||_2, L the cross-entropy of the batch (measures/grad_norm.py);
- ``snip`` (Lee et al., ICLR 2019): sum |theta * dL/dtheta| (measures/snip.py: |dL/dmask| at mask = 1);
- ``jacov`` (Mellor et al., "Neural Architecture Search without Training", arXiv 2006.04647v1, sec. 3):
  J the input gradients of the summed logits, one row per image, Sigma their correlation matrix with eigenvalues
  lambda, score = -sum_i [log(lambda_i + k) + 1/(lambda_i + k)] with k = 1e-5 (measures/jacob_cov.py);
- ``naswot`` (Mellor et al., ICML 2021, sec. 3, eq. 2): c_i the binary code of image i (which units of every ReLU
  are active), K_H[i, j] = N_A - Hamming(c_i, c_j), score = log|K_H| (BayesWatch/nas-without-training
  score_networks.py: a forward hook on each ReLU that reaches the output adds c c^T + (1 - c)(1 - c)^T;
  scores.py hooklogdet).

Each proxy is a pure function of ``(net, x, y)``: it scores a copy of the network in training mode (BN on batch
statistics, as the references score freshly built networks), so the network passed in is never changed.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]
JACOV_K = 1e-5  # measures/jacob_cov.py eval_score: k = 1e-5


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
    batch (x, y) (measures/grad_norm.py and snip.py: loss_fn = F.cross_entropy)."""
    net = copy.deepcopy(net).train()
    return _weight_grads(net, F.cross_entropy(net(x), y))


@torch.no_grad()
def saliency(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    """sum |w * g| over all weights (the snip and synflow sums)."""
    return float(sum((w * g).abs().sum() for w, g in zip(weights, grads)))


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


def jacov_score(jacobians: torch.Tensor, k: float = JACOV_K) -> float:
    """-sum(log(lambda + k) + 1/(lambda + k)) over the eigenvalues lambda of the correlation matrix of the rows of
    ``jacobians`` [B, D]; NaN when a row is constant (its correlations are undefined; the reference yields NaN)."""
    corr = torch.corrcoef(jacobians.double())  # [B, B]
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    eigenvalues = torch.linalg.eigvalsh(corr)  # [B], real: corr is symmetric (the reference's np.linalg.eig)
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def jacov(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Jacobian covariance score of the input gradients of the summed logits, one row per image."""
    net = copy.deepcopy(net).train()
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x).sum(), x, allow_unused=True)  # (B, 3, H, W), or None: x unused
    return math.nan if grad is None else jacov_score(grad.flatten(1))


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


PROXIES: dict[str, Proxy] = {"synflow": synflow, "grad_norm": grad_norm, "snip": snip, "jacov": jacov,
                             "naswot": naswot}


def as_score(value: float) -> float:
    """A proxy value as a score to maximise: an undefined value (NaN: the jacov of a network whose output ignores its
    input) ranks below every other, as -inf (naswot's log|K_H| of a singular kernel already is)."""
    return -math.inf if math.isnan(value) else value


def get_proxy(name: str) -> Proxy:
    """The proxy called ``name``; ValueError naming the valid ones otherwise."""
    if name not in PROXIES:
        raise ValueError(f"proxy={name!r} is not a zero-cost proxy; choose one of {', '.join(PROXIES)}")
    return PROXIES[name]
