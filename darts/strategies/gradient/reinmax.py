"""ReinMax: Bridging Discrete and Backpropagation: Straight-Through and Beyond (Liu et al., NeurIPS 2023), as a
sampler in DARTS's supernet (the way ConfigurableOptimizer uses it).

Each edge draws one op D ~ Categorical(pi_0), pi_0 = softmax(alpha), and the forward pass runs only that op (weight
exactly 1), as GDAS does. The backward pass replaces straight-through's first-order estimate with ReinMax's
second-order one (paper Algorithm 2, Heun's method): for the gradient g of the loss at the one-hot sample D,

    pi_1 = (softmax(alpha / tau) + D) / 2,
    grad_alpha = 2 (diag(pi_1) - pi_1 pi_1^T) g  -  1/2 (diag(pi_0) - pi_0 pi_0^T) g,

centred over each edge's ops (the official ``ReinMax_Auto.backward`` subtracts the mean). The temperature enters the
gradient only. Everything else is GDAS's: tau annealed linearly from ``tau_max`` to ``tau_min`` over the epochs, the
non-sampled ops' zero weights added to each edge's sum (their gradient path), the first-order arch step on the
validation loss, the genotype from softmax(alpha).
Code: LiyuanLucasLiu/ReinMax (PyPI ``reinmax`` 0.1.0, reinmax/reinmax.py ``ReinMax_Auto``, ``reinmax(logits, tau)``);
automl/ConfigurableOptimizer src/confopt/oneshot/archsampler/reinmax/sampler.py (``ReinMaxSampler(GDASSampler)``:
``reinmax(alpha, tau)`` on the raw alphas, GDAS's tau schedule 10 -> 0.1), searchspace/common/mixop.py
(``OperationBlock``: the argmax op alone, every other op's weight added), profile/profiles.py ``ReinMaxProfile``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from darts.strategies.gradient.gdas import GDAS, gumbel_noise, one_hot, selected_only


def heun_gradient(alphas: torch.Tensor, sample: torch.Tensor, tau: float, grad: torch.Tensor) -> torch.Tensor:
    """ReinMax's gradient at alphas [E, K] of a loss whose gradient at the one-hot ``sample`` [E, K] is ``grad``
    [E, K]: 2 J(pi_1) g - J(pi_0) g / 2 with J(p) g = p * g - p * (p . g), centred over K -> [E, K]."""
    pi_0 = F.softmax(alphas, dim=-1)  # [E, K]
    pi_1 = (F.softmax(alphas / tau, dim=-1) + sample) / 2  # [E, K]
    second = 2 * grad * pi_1  # [E, K]
    second = second - pi_1 * second.sum(dim=-1, keepdim=True)
    first = -0.5 * grad * pi_0  # [E, K]
    first = first - pi_0 * first.sum(dim=-1, keepdim=True)
    total = first + second
    return total - total.mean(dim=-1, keepdim=True)


class ReinMaxSample(torch.autograd.Function):
    """The one-hot ``sample`` [E, K] drawn from softmax(alphas) in value, ReinMax's gradient to alphas [E, K]."""

    @staticmethod
    def forward(ctx, alphas: torch.Tensor, sample: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(alphas, sample)
        ctx.tau = tau
        return sample.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        alphas, sample = ctx.saved_tensors
        return heun_gradient(alphas, sample, ctx.tau, grad), None, None


def reinmax_hard(alphas: torch.Tensor, tau: float,
                 unselected_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One op per edge drawn from softmax(alphas) [E, K] (the Gumbel-max trick: the law of the official
    ``torch.multinomial``), with ReinMax's gradient: hard weights [E, K], the op per edge [E], and a flag that is True
    when the draw is not finite (as ``gdas.gumbel_hard``; ``unselected_grad`` too)."""
    gumbels = gumbel_noise(alphas)  # [E, K]
    index = (alphas.detach().log_softmax(dim=-1) + gumbels).argmax(dim=-1)  # [E]
    chosen = one_hot(index, alphas)  # [E, K]
    hard = selected_only(ReinMaxSample.apply(alphas, chosen, tau), chosen, unselected_grad)  # [E, K]
    bad = torch.isinf(gumbels).any() | ~torch.isfinite(alphas).all()
    return hard, index, bad


class ReinMax(GDAS):
    """GDAS with ReinMax's estimator: the op of each edge drawn from softmax(alpha), ReinMax's second-order gradient.

    Args:
        tau_max, tau_min: the temperature of ReinMax's gradient, linear from tau_max (first epoch) to tau_min (last
            epoch) (ConfigurableOptimizer ``GDASProfile``: 10 and 0.1, which ``ReinMaxProfile`` keeps).
        unselected_grad: the non-sampled ops' (zero) weights join each edge's sum, so they get a gradient
            (ConfigurableOptimizer ``OperationBlock.forward_method``: True); False keeps only the sampled op's.
        order, arch_lr, arch_betas, arch_weight_decay, arch_start_epoch: as ``GDAS`` (ConfigurableOptimizer's DARTS
            trainer preset: first order, Adam 3e-4 with betas (0.5, 0.999) and weight decay 1e-3).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def sample(self, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One op per edge from softmax(alphas) [E, K] with ReinMax's gradient at the current tau (``reinmax_hard``)."""
        return reinmax_hard(alphas, self.tau, self.unselected_grad)
