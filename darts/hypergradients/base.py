"""What every hypergradient method shares: the network's weights, its SGD optimizer and its loss as a function of the
weights (``torch.func.functional_call``, as the second-order arch step), and one hook around each weight step.

A run binds a method once (``bind``) and wraps each weight update in ``update(train, valid)``: the method takes its
hyperparameter step there (from the gradients in ``.grad``, the optimizer's state and, where it needs one, a batch of
the held-out split), writes the values into the optimizer's parameter groups, and the optimizer steps with them. A
learning rate a method adapts is the schedule's rate times a learned factor (1 at the start): each hyperparameter
step changes the rate in effect as the method's rule says, and the schedule keeps its shape around it.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed
from darts.training import Batch

LossOf = Callable[[dict[str, torch.Tensor], Batch], torch.Tensor]  # (weights by name, batch) -> mean loss (scalar)


def direction(w: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], weight_decay: float | Sequence[float],
              momentum: float = 0.0, nesterov: bool = False,
              buffers: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """The direction d of one ``torch.optim.SGD`` step (dampening 0), w' = w - lr * d: d = g + wd * w, with momentum
    buf = momentum * buf + d (buf = d at the first step) and d = buf, or d + momentum * buf with Nesterov (DARTS
    cnn/architect.py's virtual step); ``weight_decay`` one value or one per tensor; a missing gradient counts as 0."""
    decays = [weight_decay] * len(w) if isinstance(weight_decay, (int, float)) else list(weight_decay)
    out = []
    for p, g, wd, buf in zip(w, grads, decays, buffers or [None] * len(w)):
        d = wd * p if g is None else g + wd * p
        if momentum:
            buf = d if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        out.append(d)
    return out


def decay_factor(momentum: float, nesterov: bool) -> float:
    """d(direction) / d(weight_decay * w): 1, or 1 + momentum with Nesterov (its step counts the gradient twice)."""
    return 1.0 + momentum if nesterov and momentum else 1.0


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of the elementwise products of two tensor lists (a scalar)."""
    return sum((x * y).sum() for x, y in zip(a, b))


class Hypergradient(ABC):
    """A hypergradient method bound to a network's weights and SGD optimizer (see the module docstring).

    Subclasses implement ``step`` (the hyperparameter step before a weight update) and ``values`` (the current
    hyperparameters); ``needs_validation`` says whether ``step`` reads a batch of the held-out split.
    """

    name = "base"  # the config option, ``hypergradient=<name>``, named in errors
    needs_validation = True

    def __init__(self) -> None:
        self.scale = 1.0  # the learned factor on the schedule's learning rate
        self.lr = math.nan  # the rate in effect at the last step
        self.sums: dict[str, float] = {}
        self.count = 0

    def bind(self, named: Sequence[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, loss_of: LossOf,
             dist: Distributed = SINGLE) -> None:
        """Bind to the trained weights ``named`` (name, parameter), their optimizer (``torch.optim.SGD``, one rate per
        group), the loss of the weights on a batch and the ranks (hypergradients are averaged over them); binding
        again (a reshaped supernet's new optimizer) keeps the learned values."""
        if not isinstance(optimizer, torch.optim.SGD):
            raise ValueError(f"hypergradient={self.name} needs torch.optim.SGD on the weights, not "
                             f"{type(optimizer).__name__}")
        self.names, self.w = zip(*[(n, p) for n, p in named if p.requires_grad])
        self.optimizer, self.loss_of, self.dist = optimizer, loss_of, dist
        if math.isnan(self.lr):
            self.lr = optimizer.param_groups[0]["lr"]

    def groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter group of each bound weight."""
        index = {id(q): g for g in self.optimizer.param_groups for q in g["params"]}
        return [index[id(p)] for p in self.w]

    def current_direction(self) -> list[torch.Tensor]:
        """The direction the optimizer's next step takes from ``.grad`` and its momentum buffers (``direction``); 0
        for a weight without a gradient, which torch's SGD leaves alone (no decay, no momentum)."""
        out = []
        for p, g in zip(self.w, self.groups()):
            if p.grad is None:
                out.append(torch.zeros_like(p))
                continue
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            out += direction([p.detach()], [p.grad], g["weight_decay"], g["momentum"], g["nesterov"], [buf])
        return out

    @contextmanager
    def update(self, train: Batch, valid: Batch | None) -> Iterator[None]:
        """Around one weight step (after backward and clipping): the hyperparameter step, then the optimizer's step
        with the adapted values; the groups get the schedule's rate back afterwards."""
        scheduled = [g["lr"] for g in self.optimizer.param_groups]
        self.step(train, valid, scheduled[0] * self.scale)
        self.lr = scheduled[0] * self.scale
        for g, lr in zip(self.optimizer.param_groups, scheduled):
            g["lr"] = lr * self.scale
        try:
            yield
        finally:
            for g, lr in zip(self.optimizer.param_groups, scheduled):
                g["lr"] = lr

    @abstractmethod
    def step(self, train: Batch, valid: Batch | None, lr: float) -> None:
        """The hyperparameter step before a weight update at learning rate ``lr`` (the rate in effect)."""

    @abstractmethod
    def values(self) -> dict[str, float]:
        """The current hyperparameters (``lr``: the rate in effect at the last step)."""

    def averaged(self, values: Sequence[torch.Tensor]) -> list[float]:
        """Scalars (0-dim tensors) averaged over the ranks, read back once: one host sync per hyperparameter step,
        as the optimizer takes its rates and decays as Python numbers."""
        stacked = torch.stack([v.detach().double() for v in values])
        return (self.dist.sum(stacked) / self.dist.world).tolist()

    def note(self, **hypergradients: float) -> None:
        """Add one step's hypergradients to the epoch's means."""
        for key, value in hypergradients.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def scalars(self) -> dict[str, float]:
        """The hyperparameters now and the epoch's mean hypergradients (``grad_<name>``); starts the next epoch."""
        means = {f"grad_{k}": v / max(self.count, 1) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return {**self.values(), **means}

    def record(self) -> dict[str, Any]:
        """What result.json records: the method and the final hyperparameters."""
        return {"method": self.name, **self.values()}

    def state_dict(self) -> dict[str, Any]:
        """The learned factor on the learning rate and the rate in effect (the optimizer's groups hold the decays)."""
        return {"scale": self.scale, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s state."""
        self.scale, self.lr = state["scale"], state["lr"]
