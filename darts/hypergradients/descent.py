"""Online learning-rate adaptation by hypergradient descent (Baydin, Cornish, Martinez Rubio, Schmidt and Wood,
"Online learning rate adaptation with hypergradient descent", ICLR 2018).

Each step theta_t = theta_{t-1} - alpha * d_{t-1} makes f(theta_t) a function of the rate, with derivative
h_t = -grad f(theta_t) . d_{t-1} (sec. 2; the dependence of the momentum buffer on alpha is ignored, as the paper's
SGDN-HD does); the rate takes one gradient step on it before the update, alpha_t = alpha_{t-1} - beta * h_t. Plain SGD
gives SGD-HD: alpha_t = alpha_{t-1} + beta * grad f(theta_t) . grad f(theta_{t-1}). f is the objective the optimizer
minimises, the training loss plus wd/2 |w|^2: no held-out data.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed
from darts.hypergradients.base import Hypergradient, LossOf, dot
from darts.settings import number
from darts.training import Batch


def hd_rate(lr: float, beta: float, h: float) -> float:
    """alpha_t = alpha_{t-1} - beta * h_t (sec. 2, eq. 3's update)."""
    return lr - beta * h


class HypergradientDescent(Hypergradient):
    """SGD-HD (with momentum: SGDN-HD's rule) on the weights' learning rate, at every weight step.

    Args:
        beta: the hypergradient learning rate (sec. 4: beta = 0.001 for SGD-HD and SGDN-HD, with alpha_0 = 0.001;
            here alpha_0 is the recipe's rate).
    """

    name = "hd"
    needs_validation = False

    def __init__(self, beta: float = 0.001):
        number("hypergradient.beta", beta, 0, low_open=True)
        super().__init__()
        self.beta = beta
        self.previous: list[torch.Tensor] | None = None  # d_{t-1}, the last step's direction

    def bind(self, named: Sequence[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, loss_of: LossOf,
             dist: Distributed = SINGLE) -> None:
        """Bind (``Hypergradient.bind``); the first step after it has no previous direction."""
        super().bind(named, optimizer, loss_of, dist)
        self.previous = None

    def step(self, train: Batch, valid: Batch | None, lr: float) -> None:
        """h_t from the gradient in ``.grad`` and the last direction, the rate's step, then this step's direction."""
        d = self.current_direction()
        if self.previous is not None and lr > 0:
            grad_f = [torch.zeros_like(p) if p.grad is None else p.grad + g["weight_decay"] * p.detach()
                      for p, g in zip(self.w, self.groups())]  # grad f, the optimizer's objective (0: no gradient)
            (h,) = self.averaged([-dot(grad_f, self.previous)])
            self.note(lr=h)
            self.scale *= hd_rate(lr, self.beta, h) / lr
        self.previous = [x.detach().clone() for x in d]

    def values(self) -> dict[str, float]:
        """The rate in effect."""
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """The learned factor on the rate and the last step's direction."""
        return {**super().state_dict(), "previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them."""
        super().load_state_dict(state)
        self.previous = state["previous"]
