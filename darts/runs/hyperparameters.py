"""What a run hands a hypergradient method (``darts.hypergradients``): the loss of its network or supernet as a
function of the weights (``functional_call``, as the second-order arch step), the held-out batches and the method's
per-epoch record."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from darts.distributed import Distributed
from darts.hypergradients.base import Hypergradient, LossOf
from darts.runs.tensorboard_log import TensorBoardLog
from darts.strategies.base import Strategy
from darts.training import AroundStep, Batch, frozen


def network_loss(model: nn.Module) -> LossOf:
    """Cross-entropy of ``model``'s logits (an auxiliary head's left out) with its weights replaced."""
    def loss(weights: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        x, y = batch
        output = functional_call(model, weights, (x,), strict=False)
        return F.cross_entropy(output[0] if isinstance(output, tuple) else output, y)

    return loss


def supernet_loss(supernet: nn.Module, strategy: Strategy) -> LossOf:
    """Cross-entropy of the supernet under the weight step's mixing weights, its weights replaced (the arch
    parameters frozen: the hyperparameters' step moves no alpha)."""
    def loss(weights: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        x, y = batch
        with frozen(strategy.arch_parameters()):
            return F.cross_entropy(functional_call(supernet, weights, (x, strategy.weight_mixing(batch)),
                                                   strict=False), y)

    return loss


def batches(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The loader's batches, over and over (one iterator per pass)."""
    while True:
        yield from loader


class HyperRecord:
    """A run's hypergradient method (None: none, and every call does nothing) with its per-epoch history: TensorBoard
    ``hyper/<name>`` (the hyperparameters at the epoch's end, the epoch's mean hypergradients ``grad_<name>``), the
    checkpoint and result.json's ``hypergradient``."""

    def __init__(self, method: Hypergradient | None):
        self.method = method
        self.history: list[dict[str, Any]] = []
        self.held_out: Iterator[Batch] | None = None  # this epoch's held-out batches (restarted every epoch)

    def around(self, valid_loader: Any) -> AroundStep | None:
        """What wraps each weight step of a training loop on its batch, the method reading ``valid_loader``'s batches
        where it needs held-out data (ValueError if there is none); None without a method."""
        hyper = self.method
        if hyper is None:
            return None
        if hyper.needs_validation and valid_loader is None:
            raise ValueError(f"hypergradient={hyper.name} needs a held-out split of the training set (the test set "
                             "is never used): set valid_portion, e.g. valid_portion=0.1, or hypergradient=none")
        if not hyper.needs_validation:
            return lambda train: hyper.update(train, None)

        def around(train: Batch) -> AbstractContextManager:
            if self.held_out is None:  # from the split's first batch every epoch: a resumed run reads the same
                self.held_out = batches(valid_loader)
            return hyper.update(train, next(self.held_out))

        return around

    def bind(self, named: Sequence[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, loss_of: LossOf,
             dist: Distributed) -> None:
        """Bind the method (if any) to the trained weights, their optimizer and loss (``Hypergradient.bind``)."""
        if self.method is not None:
            self.method.bind(named, optimizer, loss_of, dist)

    def bind_search(self, supernet: nn.Module, strategy: Strategy, optimizer: torch.optim.Optimizer,
                    dist: Distributed) -> None:
        """Bind the method (if any) to a search's supernet weights (the alphas left out) and their optimizer, the
        arch step's batches being held out (again after a reshape: the learned values are kept)."""
        named = [(n, p) for n, p in supernet.named_parameters() if not n.startswith("alphas.")]
        self.bind(named, optimizer, supernet_loss(supernet, strategy), dist)

    def log(self, board: TensorBoardLog, epoch: int) -> None:
        """The epoch's values to TensorBoard and the history; the next epoch's held-out batches start over."""
        self.held_out = None
        if self.method is not None:
            values = self.method.scalars()
            board.scalars("hyper", values, epoch)
            self.history = [r for r in self.history if r["epoch"] < epoch] + [{"epoch": epoch, **values}]

    def state_dict(self) -> dict[str, Any]:
        """The method's state and the history (nothing without a method)."""
        return {} if self.method is None else {"hypergradient": {"method": self.method.state_dict(),
                                                                 "history": self.history}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them from a checkpoint's state."""
        if self.method is not None:
            self.method.load_state_dict(state["hypergradient"]["method"])
            self.history = state["hypergradient"]["history"]

    def result(self) -> dict[str, Any]:
        """result.json's ``hypergradient``: the method, its final values and the history (nothing without one)."""
        return {} if self.method is None else {"hypergradient": {**self.method.record(), "epochs": self.history}}
