"""Per-layer weight decay by implicit differentiation (Lorraine, Vicol and Duvenaud, "Optimizing millions of
hyperparameters by implicit differentiation", AISTATS 2020).

At a minimum w* of L_T(w, lambda) = L_train(w) + sum_l lambda_l / 2 |w_l|^2 the implicit function theorem gives
(eq. 1-2)

    dL_val/dlambda_l = -[grad L_val(w*)^T H^{-1}]_l . w*_l,        H = d^2 L_T / dw^2,

since d^2 L_T / (dw_l dlambda_l) = w_l. The inverse-Hessian-vector product is the truncated Neumann series of
Algorithm 3, alpha * sum_{j=0..i} (I - alpha H)^j v, exact as i grows when 0 < alpha < 2 / lambda_max(H); each term
costs one Hessian-vector product (double backward through L_train, plus lambda_l v_l).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed
from darts.hypergradients.base import Hypergradient, LossOf
from darts.settings import integer, number
from darts.training import Batch

Product = Callable[[list[torch.Tensor]], list[torch.Tensor]]  # v -> H v, tensor lists of the weights' shapes


def hessian_product(train_loss: torch.Tensor, w: Sequence[torch.Tensor], decays: Sequence[float]) -> Product:
    """v -> H v of L_T = ``train_loss`` (computed from the weights ``w``) + sum_i decays[i] / 2 |w_i|^2, by double
    backward through one graph of grad L_train."""
    grads = torch.autograd.grad(train_loss, list(w), create_graph=True, allow_unused=True)
    used = [i for i, g in enumerate(grads) if g is not None]

    def product(v: list[torch.Tensor]) -> list[torch.Tensor]:
        hv = [wd * x for wd, x in zip(decays, v)]
        if used:
            second = torch.autograd.grad([grads[i] for i in used], [w[i] for i in used], [v[i] for i in used],
                                         retain_graph=True, allow_unused=True)
            for i, h in zip(used, second):
                if h is not None:
                    hv[i] = hv[i] + h
        return hv

    return product


def neumann(product: Product, v: Sequence[torch.Tensor], terms: int, step: float) -> list[torch.Tensor]:
    """H^{-1} v by Algorithm 3: p = sum_{j=0..terms} (I - step * H)^j v, returned as step * p."""
    current = [x.detach() for x in v]
    total = [x.clone() for x in current]
    for _ in range(terms):
        hv = product(current)
        current = [(c - step * h).detach() for c, h in zip(current, hv)]
        total = [t + c for t, c in zip(total, current)]
    return [step * t for t in total]


def weight_decay_hypergradient(train_loss: torch.Tensor, valid_grads: Sequence[torch.Tensor],
                               w: Sequence[torch.Tensor], decays: Sequence[float], terms: int,
                               step: float) -> list[torch.Tensor]:
    """dL_val/dlambda_i for each weight tensor w_i with its own decay (module docstring): -(H^{-1} v)_i . w_i with
    v = ``valid_grads`` and H that of ``train_loss`` (computed from ``w``) plus the decays."""
    ihvp = neumann(hessian_product(train_loss, w, decays), valid_grads, terms, step)
    return [-(x * p.detach()).sum() for x, p in zip(ihvp, w)]


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its module's name (``cells.0.conv.weight`` -> ``cells.0.conv``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


class Implicit(Hypergradient):
    """Per-layer weight decay descended along its implicit hypergradient (module docstring) every ``interval``
    weight steps (Algorithm 1: the weights train, then one hyperparameter step at the current weights), in log space:
    log lambda_l <- log lambda_l - hyper_lr * lambda_l * dL_val/dlambda_l. Each layer gets a parameter group of its
    own, starting at the optimizer's weight decay.

    Args:
        terms: i, the Neumann terms after the first (Algorithm 3).
        step: alpha of Algorithm 3; None = the weights' learning rate in effect.
        interval: weight steps between hyperparameter steps.
        hyper_lr: the step on log lambda_l per unit of lambda_l * dL_val/dlambda_l.
    """

    name = "implicit"

    def __init__(self, terms: int = 5, step: float | None = None, interval: int = 10, hyper_lr: float = 0.01):
        integer("hypergradient.terms", terms, 0)
        number("hypergradient.step", step, 0, low_open=True, nullable=True)
        integer("hypergradient.interval", interval, 1)
        number("hypergradient.hyper_lr", hyper_lr, 0, low_open=True)
        super().__init__()
        self.terms, self.neumann_step, self.interval, self.hyper_lr = terms, step, interval, hyper_lr
        self.steps = 0
        self.learned: dict[str, float] = {}  # each layer's decay, carried when bound again

    def bind(self, named: Sequence[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, loss_of: LossOf,
             dist: Distributed = SINGLE) -> None:
        """Bind (``Hypergradient.bind``) and split the optimizer's groups into one group per layer (at its learned
        decay when bound again)."""
        if hasattr(self, "optimizer"):
            self.learned = self.decays()
        super().bind(named, optimizer, loss_of, dist)
        names = {id(p): n for n, p in named}
        groups = []
        for group in optimizer.param_groups:
            layers: dict[str, list[torch.Tensor]] = {}
            for p in group["params"]:
                layers.setdefault(layer_of(names.get(id(p), "")), []).append(p)
            if group["weight_decay"] <= 0:
                raise ValueError(f"hypergradient={self.name} adapts weight decays in log space, so optimizer."
                                 f"weight_decay={group['weight_decay']} would stay there; set it > 0")
            settings, wd = {k: v for k, v in group.items() if k != "params"}, group["weight_decay"]
            groups += [{**settings, "params": ps, "layer": layer, "weight_decay": self.learned.get(layer, wd)}
                       for layer, ps in layers.items()]
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.add_param_group(group)

    def step(self, train: Batch, valid: Batch | None, lr: float) -> None:
        """Every ``interval`` steps: the per-layer hypergradients at the current weights, then the log-space steps."""
        self.steps += 1
        if self.steps % self.interval:
            return
        groups = [g for g in self.optimizer.param_groups if any(p.requires_grad for p in g["params"])]
        w = [p for g in groups for p in g["params"] if p.requires_grad]
        names = dict(zip(map(id, self.w), self.names))
        weights = lambda: {names[id(p)]: p for p in w}  # noqa: E731
        valid_grads = torch.autograd.grad(self.loss_of(weights(), valid), w, allow_unused=True)
        valid_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(w, valid_grads)]
        decays = [g["weight_decay"] for g in groups for p in g["params"] if p.requires_grad]
        per_tensor = weight_decay_hypergradient(self.loss_of(weights(), train), valid_grads, w, decays, self.terms,
                                                self.neumann_step or lr)
        sizes = [sum(p.requires_grad for p in g["params"]) for g in groups]
        per_layer = self.averaged([torch.stack(t).sum() for t in _split(per_tensor, sizes)])
        for g, h in zip(groups, per_layer):
            g["weight_decay"] *= math.exp(-self.hyper_lr * g["weight_decay"] * h)
        self.note(weight_decay=sum(per_layer) / len(per_layer),
                  weight_decay_norm=math.sqrt(sum(h * h for h in per_layer)))

    def decays(self) -> dict[str, float]:
        """Each layer's weight decay."""
        return {g["layer"]: g["weight_decay"] for g in self.optimizer.param_groups}

    def values(self) -> dict[str, float]:
        """The rate in effect and the mean, smallest and largest layer weight decay."""
        decays = list(self.decays().values())
        return {"lr": self.lr, "weight_decay": sum(decays) / len(decays), "weight_decay_min": min(decays),
                "weight_decay_max": max(decays)}

    def record(self) -> dict[str, Any]:
        """The method, the final values and every layer's weight decay."""
        return {**super().record(), "weight_decay_per_layer": self.decays()}

    def state_dict(self) -> dict[str, Any]:
        """The step count (the groups, in the optimizer's state, hold the decays)."""
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore it."""
        super().load_state_dict(state)
        self.steps = state["steps"]


def _split(items: list, sizes: list[int]) -> list[list]:
    """``items`` cut into consecutive runs of the given sizes."""
    out, start = [], 0
    for n in sizes:
        out.append(items[start:start + n])
        start += n
    return out
