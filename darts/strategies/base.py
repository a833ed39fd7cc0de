"""The strategy interface: how arch parameters become mixing weights, and how they are updated.

Everything else (supernet, data, loop, logging, checkpoints) is shared and knows nothing about the
algorithm. The search loop (``darts.strategies.bilevel.search_epoch``) calls, per step,

    strategy.arch_step(train_batch, valid_batch, weight_optimizer)          # update the arch parameters
    logits = supernet(x, strategy.weight_mixing(train_batch))               # the weight step's forward
    loss = strategy.weight_loss(logits, y)                                  # ... and its loss

per epoch ``strategy.epoch_start(epoch, epochs)`` before the first step. ``genotype()`` is the current discrete
architecture (which genotype the run reports is the run's ``selection``, ``darts.selections``); ``scalars()`` adds
what is specific to the algorithm to the logs.

Hooks a new method overrides (each has a neutral default):

- ``arch_penalty()``: a term of the arch parameters alone added to the arch objective, in first- and
  second-order steps alike (e.g. DrNAS's KL to the anchor, beta-DARTS's beta regularisation);
- ``weight_mixing(train)``: the mixing weights the weight step sees on its batch ``train`` (e.g. SDARTS's
  perturbed op weights, adversarial ones computed on that batch);
- ``weight_loss(logits, y)``: the weight step's loss (cross-entropy; add a regulariser here);
- ``reshape(epoch, weight_optimizer)``: called after ``epoch_start`` (and on resume, for the checkpoint's epoch),
  it may change the supernet's shape between stages (DrNAS's progressive learning: ops pruned, partial channels
  widened) and return the weight optimizer rebuilt for the new weights; the run then trains with that one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from darts.context import Context
from darts.cost.budget import Budget
from darts.distributed import Distributed
from darts.supernet import Mixing, Supernet, SupernetOptions
from darts.training import Batch
from search_spaces.base import SearchSpace



@dataclass
class SearchContext:
    """What a post-search selection phase (``darts.selections``) may use: the trained supernet (its ``context``: device, ranks, progress),
    both halves of the search split (augmented loaders, as the search used them), the weight optimizer and the steps
    per epoch."""

    supernet: Supernet
    train_loader: Iterable[Batch]
    valid_loader: Iterable[Batch]
    weight_optimizer: torch.optim.Optimizer
    steps: int


class Strategy(ABC):
    """A gradient-based search algorithm acting on a supernet of a search space.

    Args:
        supernet: the weight-sharing network; owns the alphas [E, K] per cell type.
        space: the search space (derivation, genotype text).
        arch_start_epoch: epochs of weight-only warm-up before arch steps begin.
    """

    samples_paths: bool = False  # whether a weight step may leave weights without a gradient (sampled or pruned ops)
    budget: Budget | None = None  # a cost target the arch objective penalises (``darts.cost.budget``), set by the run

    def __init__(self, supernet: Supernet, space: SearchSpace, arch_start_epoch: int = 0):
        self.supernet = supernet
        self.space = space
        self.arch_start_epoch = arch_start_epoch
        self.epoch = 0

    @classmethod
    def supernet_options(cls, **settings: Any) -> SupernetOptions:
        """What the strategy built with ``settings`` needs the supernet to offer (default: plain mixed ops)."""
        return SupernetOptions()

    @property
    def context(self) -> Context:
        """The run's execution context (the supernet's, given when it was built)."""
        return self.supernet.context

    @property
    def dist(self) -> Distributed:
        """The run's ranks: arch gradients are averaged over them."""
        return self.context.dist

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """Called before the first step of each epoch (annealing schedules live here)."""
        self.epoch = epoch

    @property
    def arch_active(self) -> bool:
        """Whether arch steps run in the current epoch."""
        return self.epoch >= self.arch_start_epoch

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """Every parameter the arch step updates (the supernet's alphas; subclasses may add, e.g. betas)."""
        return self.supernet.arch_parameters()

    @abstractmethod
    def mixing(self) -> dict[str, Mixing]:
        """Mixing weights per cell type for the next forward pass (differentiable in the alphas)."""

    @abstractmethod
    def arch_step(self, train: Batch, valid: Batch, weight_optimizer: torch.optim.Optimizer) -> None:
        """One update of the architecture parameters."""

    @abstractmethod
    def op_weights(self) -> dict[str, torch.Tensor]:
        """Per cell type [E, K] op weights the genotype is derived from (detached)."""

    def genotype(self) -> Any:
        """The current discrete architecture."""
        return self.space.derive(self.op_weights())

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy of the supernet under the current mixing weights."""
        x, y = batch
        return F.cross_entropy(self.supernet(x, self.mixing()), y)

    def arch_penalty(self) -> torch.Tensor | None:
        """A term of the arch parameters alone added to the arch objective (None: nothing)."""
        return None

    def arch_loss(self, valid: Batch) -> torch.Tensor:
        """The first-order arch objective: L_val plus ``arch_penalty()``, under the budget's penalty when there is one
        (on the expected cost of the same mixing weights)."""
        x, y = valid
        mixing = self.mixing()
        loss = F.cross_entropy(self.supernet(x, mixing), y)
        penalty = self.arch_penalty()
        loss = loss if penalty is None else loss + penalty
        return loss if self.budget is None else self.budget.penalise(loss, mixing)

    def one_sample(self) -> AbstractContextManager:
        """Within it, every ``mixing()`` uses the same random draw (a sampling strategy overrides it; the unrolled
        second-order step needs one architecture throughout its finite difference)."""
        return nullcontext()

    def weight_mixing(self, train: Batch) -> dict[str, Mixing]:
        """The mixing weights of the weight step on its batch ``train`` (images (B, 3, H, W), labels (B,)), which a
        strategy may use (e.g. SDARTS-ADV's attack); the arch parameters are frozen there. Default: ``mixing()``."""
        return self.mixing()

    def weight_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The weight step's loss on logits (B, K) and labels (B,): cross-entropy."""
        return F.cross_entropy(logits, y)

    def reshape(self, epoch: int, weight_optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
        """Bring the supernet to its shape for ``epoch``; the weight optimizer rebuilt for its new weights (state
        carried over), or None when nothing changed (default)."""
        return None

    def scalars(self) -> dict[str, float | torch.Tensor]:
        """Algorithm-specific values to log each epoch (e.g. a temperature)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the supernet needed to resume exactly."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        self.epoch = state["epoch"]


def supernet_options(factory: Callable[..., Strategy]) -> SupernetOptions:
    """What the strategy that ``factory`` builds needs of the supernet: a partial of a ``Strategy`` class (as the
    configuration gives it) asks the class with the partial's settings; anything else gets plain mixed ops."""
    func, settings = (factory.func, factory.keywords) if isinstance(factory, partial) else (factory, {})
    if isinstance(func, type) and issubclass(func, Strategy):
        return func.supernet_options(**settings)
    return SupernetOptions()
