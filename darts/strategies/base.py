"""The strategy interface: how arch parameters become mixing weights, and how they are updated.

Everything else (supernet, data, loop, logging, checkpoints) is shared and knows nothing about the
algorithm. The search loop (``darts.trainer.search_epoch``) calls, per step,

    strategy.arch_step(train_batch, valid_batch, weight_optimizer)   # update the arch parameters
    logits = supernet(x, strategy.mixing())                          # weight step with these weights

and, per epoch, ``strategy.epoch_start(epoch, epochs)`` before the first step. ``genotype()`` is the
current discrete architecture; ``scalars()`` adds what is specific to the algorithm to the logs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F

from darts.supernet import Mixing, Supernet
from search_spaces.base import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, H, W), labels (B,)


class Strategy(ABC):
    """A gradient-based search algorithm acting on a supernet of a search space.

    Args:
        supernet: the weight-sharing network; owns the alphas [E, K] per cell type.
        space: the search space (derivation, genotype text).
        arch_start_epoch: epochs of weight-only warm-up before arch steps begin.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, arch_start_epoch: int = 0):
        self.supernet = supernet
        self.space = space
        self.arch_start_epoch = arch_start_epoch
        self.epoch = 0

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

    def scalars(self) -> dict[str, float | torch.Tensor]:
        """Algorithm-specific values to log each epoch (e.g. a temperature)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the supernet needed to resume exactly."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        self.epoch = state["epoch"]
