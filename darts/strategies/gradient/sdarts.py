"""SDARTS: Stabilizing Differentiable Architecture Search via Perturbation-based Regularization (Chen and Hsieh,
ICML 2020).

The weight step trains the supernet under perturbed architecture weights, which smooths the validation loss
landscape in the architecture; the arch step stays DARTS's (first or second order):
  * SDARTS-RS (random smoothing):  min_w E_{delta ~ U[-eps, eps]} L_train(w, A + delta);
  * SDARTS-ADV (adversarial):      min_w max_{||delta||_inf <= eps} L_train(w, A + delta), the max by PGD.
As in the official code, A is the op mixing weights softmax(alpha) [E, K] (sota/cnn/train_search.py perturbs after
``model.softmax_arch_parameters()``; the weight step's forward, ``updateType='weight'``, uses them as they are), and
A + delta is projected back by model_search.py ``clip``: clamped to [0, 1], each edge renormalised to sum 1.
eps grows linearly over the search, eps_t = eps_start + (eps - eps_start) * t / T (train_search.py: 0.03 -> 0.3).
SDARTS-ADV's PGD is attacker/perturb.py ``Linf_PGD_alpha``: a random start in the eps ball, 7 steps of signed
gradient ascent of size 2 eps / 7, each clamped to the ball and projected, the supernet in eval mode; the
perturbation is dropped if it did not raise the loss.
Code: xiangning-chen/SmoothDARTS sota/cnn/train_search.py, attacker/perturb.py, optimizers/darts/model_search.py.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from darts.strategies.base import Strategy
from darts.training import Batch
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.pcdarts import PCDARTS
from darts.supernet import Mixing, Supernet
from search_spaces.base import SearchSpace

ATTACKS = ("random", "adversarial")  # SDARTS-RS, SDARTS-ADV (official --perturb_alpha random / pgd_linf)

Weights = dict[str, torch.Tensor]  # [E, K] per cell type


def project(weights: torch.Tensor) -> torch.Tensor:
    """model_search.py ``clip`` of weights [E, K]: clamp to [0, 1]; an edge clamped to all zeros keeps only its
    largest entry, as 1; then each edge divided by its sum -> [E, K]."""
    top = torch.zeros_like(weights).scatter_(-1, weights.argmax(-1, keepdim=True), 1.0)  # [E, K]
    clamped = weights.clamp(0, 1)  # [E, K]
    clamped = torch.where(clamped.sum(-1, keepdim=True) == 0, top, clamped)
    return clamped / clamped.sum(-1, keepdim=True)


class Perturbation(Strategy):
    """SDARTS's weight step, placed before a DARTS-family strategy in the bases: the base's weight-step mixing with its
    op weights A [E, K] replaced by project(A + delta); everything else (edge weights, arch step) is the base's.

    Args:
        attack: ``random`` (SDARTS-RS) or ``adversarial`` (SDARTS-ADV).
        epsilon: the Linf radius reached at the end of the search (train_search.py --epsilon_alpha 0.3).
        epsilon_start: the radius at epoch 0 (train_search.py: ``0.03 + (args.epsilon_alpha - 0.03) * epoch /
            args.epochs``).
        pgd_steps: SDARTS-ADV's PGD steps, each of size 2 epsilon / pgd_steps (perturb.py: steps=7).
        random_start: SDARTS-ADV starts from a uniform draw in the ball (perturb.py: random_start=True).
        **base: the base strategy's arguments (order, arch_lr, ...).
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, attack: str = "random", epsilon: float = 0.3,
                 epsilon_start: float = 0.03, pgd_steps: int = 7, random_start: bool = True, **base: Any):
        if attack not in ATTACKS:
            raise ValueError(f"strategy.attack={attack!r} is not valid; choose one of {ATTACKS}")
        if epsilon < 0 or epsilon_start < 0:
            raise ValueError(f"SDARTS needs epsilon >= 0 and epsilon_start >= 0, got epsilon={epsilon!r}, "
                             f"epsilon_start={epsilon_start!r}")
        if pgd_steps < 1:
            raise ValueError(f"strategy.pgd_steps={pgd_steps!r} is not valid; choose an integer >= 1")
        super().__init__(supernet, space, **base)
        self.attack = attack
        self.epsilon, self.epsilon_start = float(epsilon), float(epsilon_start)
        self.pgd_steps, self.random_start = pgd_steps, random_start
        self.current_epsilon = self.epsilon_start
        self._perturb = {"random": self.random_perturbation, "adversarial": self.adversarial_perturbation}[attack]

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """eps_t = epsilon_start + (epsilon - epsilon_start) * epoch / epochs (train_search.py, every epoch)."""
        super().epoch_start(epoch, epochs)
        self.current_epsilon = self.epsilon_start + (self.epsilon - self.epsilon_start) * epoch / epochs

    def weight_mixing(self, train: Batch) -> dict[str, Mixing]:
        """The base's weight-step mixing with op weights project(A + delta) [E, K], delta from the attack on ``train``
        (constants: no gradient reaches the arch parameters, which the official code restores after the step)."""
        mixing = super().weight_mixing(train)
        clean = {t: m.weights.detach() for t, m in mixing.items()}  # [E, K]
        delta = self._perturb(mixing, train)
        return {t: replace(m, weights=project(clean[t] + delta[t])) for t, m in mixing.items()}

    def random_perturbation(self, mixing: dict[str, Mixing], train: Batch) -> Weights:
        """SDARTS-RS: delta ~ U[-eps, eps] [E, K] per cell type (perturb.py ``Random_alpha``)."""
        eps = self.current_epsilon
        return {t: torch.empty_like(m.weights).uniform_(-eps, eps) for t, m in mixing.items()}

    def adversarial_perturbation(self, mixing: dict[str, Mixing], train: Batch) -> Weights:
        """SDARTS-ADV: delta [E, K] per cell type, |delta| <= eps, from Linf PGD ascent on the weight step's loss
        (perturb.py ``Linf_PGD_alpha``); zero where the attack did not raise the loss (no host sync)."""
        eps, step = self.current_epsilon, 2 * self.current_epsilon / self.pgd_steps
        clean = {t: m.weights.detach() for t, m in mixing.items()}  # [E, K]
        delta = {t: torch.empty_like(w).uniform_(-eps, eps) if self.random_start else torch.zeros_like(w)
                 for t, w in clean.items()}
        training = self.supernet.training
        self.supernet.eval()  # perturb.py: the attack runs in eval mode (BN running statistics, none updated)
        try:
            with torch.no_grad():
                before = self._attack_loss(mixing, clean, train)
            with torch.enable_grad():
                for _ in range(self.pgd_steps):
                    a = {t: project(clean[t] + d).requires_grad_(True) for t, d in delta.items()}  # [E, K]
                    grads = torch.autograd.grad(self._attack_loss(mixing, a, train), list(a.values()))
                    # perturb.py Linf_SGD: a signed ascent step, then the difference clamped to the eps ball
                    delta = {t: (a[t].detach() + step * g.sign() - clean[t]).clamp(-eps, eps)
                             for t, g in zip(a, grads)}
            with torch.no_grad():
                after = self._attack_loss(mixing, {t: project(clean[t] + d) for t, d in delta.items()}, train)
        finally:
            self.supernet.train(training)
        keep = after >= before  # perturb.py: `if loss_before > loss_after` the unperturbed weights are restored
        return {t: torch.where(keep, d, torch.zeros_like(d)) for t, d in delta.items()}

    def _attack_loss(self, mixing: dict[str, Mixing], weights: Weights, train: Batch) -> torch.Tensor:
        """The weight step's loss on ``train`` with op weights [E, K] replaced (edge weights kept)."""
        x, y = train
        return self.weight_loss(self.supernet(x, {t: replace(m, weights=weights[t]) for t, m in mixing.items()}), y)

    def scalars(self) -> dict[str, Any]:
        """The current perturbation radius ``epsilon``, next to the base's scalars."""
        return {"epsilon": self.current_epsilon, **super().scalars()}


class SDARTS(Perturbation, DARTS):
    """SDARTS-RS / SDARTS-ADV: SDARTS's perturbed weight step and DARTS's arch step (args: ``Perturbation``,
    ``DARTS``)."""


class PCSDARTS(Perturbation, PCDARTS):
    """SDARTS's perturbed weight step on PC-DARTS: the op weights softmax(alpha) are perturbed, the edge-normalisation
    betas are not; partial channels and the arch step are PC-DARTS's (args: ``Perturbation``, ``PCDARTS``)."""
