"""One-step unrolled hypergradients of the validation loss for the learning rate and the weight decay, on the engine
of DARTS's second-order arch step (the validation loss at the unrolled weights through ``functional_call``).

One SGD step w' = w - lr * d with d = grad L_train(w) + wd * w (the gradient of L_train + wd/2 |w|^2; plus momentum,
``darts.hypergradients.base.direction``) makes L_val(w') a function of lr and wd. With v = grad L_val(w'):

    dL_val(w')/dwd = -lr * v . w      (times 1 + momentum with Nesterov momentum)
    dL_val(w')/dlr = -v . d           (-v . grad(L_train + wd/2 |w|^2)(w) without momentum)

These are the greedy one-step hypergradients of Luketina et al. ("Scalable gradient-based tuning of continuous
regularization hyperparameters", ICML 2016) for the weight decay and, for the rate, the quantity that Baydin et al.
(ICLR 2018, sec. 2) descend; here they are taken before the step (a look-ahead, as DARTS eq. 7 for the alphas).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed
from darts.hypergradients.base import Hypergradient, LossOf, decay_factor, direction, dot
from darts.settings import number
from darts.training import Batch

Weights = Callable[[list[torch.Tensor]], torch.Tensor]  # a loss as a function of the weight tensors
ADAPTABLE = ("lr", "weight_decay")


def closed_form(v: Sequence[torch.Tensor], w: Sequence[torch.Tensor], d: Sequence[torch.Tensor], lr: float,
                momentum: float = 0.0, nesterov: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL_val/dlr, dL_val/dwd) of the module docstring from v = grad L_val(w'), the weights w and the step's
    direction d (tensor lists of the weights' shapes)."""
    return -dot(v, d), -lr * decay_factor(momentum, nesterov) * dot(v, w)


def _grads(loss: torch.Tensor, w: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d w, zeros for a weight the loss does not use."""
    grads = torch.autograd.grad(loss, list(w), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(w, grads)]


def hypergradients(train_loss: Weights, valid_loss: Weights, w: Sequence[torch.Tensor], lr: float,
                   weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The closed forms (dL_val/dlr, dL_val/dwd) for one plain SGD step from the two losses as functions of the
    weights ``w`` (leaves that require grad)."""
    d = direction([p.detach() for p in w], _grads(train_loss(list(w)), w), weight_decay)
    unrolled = [(p.detach() - lr * x).requires_grad_(True) for p, x in zip(w, d)]
    v = _grads(valid_loss(unrolled), unrolled)
    return closed_form(v, [p.detach() for p in w], d, lr)


def through_unroll(train_loss: Weights, valid_loss: Weights, w: Sequence[torch.Tensor], lr: float,
                   weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL_val/dlr, dL_val/dwd) by automatic differentiation through the unrolled plain SGD step (the reference the
    closed forms are tested against)."""
    rate = torch.tensor(lr, dtype=w[0].dtype, requires_grad=True)
    decay = torch.tensor(weight_decay, dtype=w[0].dtype, requires_grad=True)
    g = _grads(train_loss(list(w)), w)
    unrolled = [p.detach() - rate * (gi + decay * p.detach()) for p, gi in zip(w, g)]
    d_lr, d_wd = torch.autograd.grad(valid_loss(unrolled), [rate, decay])
    return d_lr, d_wd


class Unrolled(Hypergradient):
    """One-step unrolled hypergradients of the validation loss (module docstring) at every weight step, each
    hyperparameter descended in log space: log h <- log h - hyper_lr * h * dL_val/dh (it stays positive).

    Args:
        adapt: the hyperparameters it adapts, among ``lr`` and ``weight_decay`` (both hypergradients are logged).
        hyper_lr: the step on log h per unit of h * dL_val/dh.
    """

    name = "unrolled"

    def __init__(self, adapt: Sequence[str] = ADAPTABLE, hyper_lr: float = 0.01):
        adapt = tuple(adapt)
        if not adapt or any(a not in ADAPTABLE for a in adapt):
            raise ValueError(f"hypergradient.adapt={list(adapt)} is not valid: a non-empty list of {list(ADAPTABLE)}")
        number("hypergradient.hyper_lr", hyper_lr, 0, low_open=True)
        super().__init__()
        self.adapt, self.hyper_lr = adapt, hyper_lr
        self.weight_decay = math.nan  # read from the optimizer when first bound

    def bind(self, named: Sequence[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, loss_of: LossOf,
             dist: Distributed = SINGLE) -> None:
        """Bind (``Hypergradient.bind``); one weight decay for every group, which must be > 0 to be adapted."""
        super().bind(named, optimizer, loss_of, dist)
        if math.isnan(self.weight_decay):
            self.weight_decay = optimizer.param_groups[0]["weight_decay"]
        for g in optimizer.param_groups:
            g["weight_decay"] = self.weight_decay
        if "weight_decay" in self.adapt and self.weight_decay <= 0:
            raise ValueError(f"hypergradient={self.name} adapts weight_decay in log space, so optimizer.weight_decay="
                             f"{self.weight_decay} would stay there; set it > 0 or hypergradient.adapt=[lr]")

    def step(self, train: Batch, valid: Batch | None, lr: float) -> None:
        """Both hypergradients at the look-ahead weights w - lr * d on ``valid``, then the log-space steps."""
        group = self.optimizer.param_groups[0]
        w = [p.detach() for p in self.w]
        d = self.current_direction()
        unrolled = [(p - lr * x).requires_grad_(True) for p, x in zip(w, d)]
        v = _grads(self.loss_of(dict(zip(self.names, unrolled)), valid), unrolled)
        decayed = [p if q.grad is not None else torch.zeros_like(p) for p, q in zip(w, self.w)]  # what SGD decays
        d_lr, d_wd = self.averaged(closed_form(v, decayed, d, lr, group["momentum"], group["nesterov"]))
        self.note(lr=d_lr, weight_decay=d_wd)
        if "lr" in self.adapt:
            self.scale *= math.exp(-self.hyper_lr * lr * d_lr)
        if "weight_decay" in self.adapt:
            self.weight_decay *= math.exp(-self.hyper_lr * self.weight_decay * d_wd)
            for g in self.optimizer.param_groups:
                g["weight_decay"] = self.weight_decay

    def values(self) -> dict[str, float]:
        """The rate in effect and the weight decay."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def state_dict(self) -> dict[str, Any]:
        """The learned factor on the rate and the weight decay."""
        return {**super().state_dict(), "weight_decay": self.weight_decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them."""
        super().load_state_dict(state)
        self.weight_decay = state["weight_decay"]
