"""Learning-rate schedules in closed form: the rate at (fractional) epoch t of a run of ``epochs`` epochs.

Being functions of (t, epochs) rather than stateful schedulers, they need no state in checkpoints, and
a resumed run given a larger ``epochs`` replans the epochs it has not run yet.
"""
from __future__ import annotations

import math
from typing import Protocol


class Schedule(Protocol):
    """A learning rate as a function of the base rate, the (fractional) epoch t and the run's epochs."""

    per_step: bool  # whether the rate changes at every step (t = epoch + step / steps), else once per epoch

    def __call__(self, lr: float, t: float, epochs: int) -> float:
        """The rate at epoch t given the base rate ``lr``."""


class Cosine:
    """Cosine annealing from the base rate to ``lr_min`` over the epochs (SGDR without restarts; torch's
    CosineAnnealingLR with T_max = epochs).

    Args:
        lr_min: the final rate (DARTS cnn/train_search.py: 0.001; cnn/train.py: 0).
        per_step: anneal at every step (t = epoch + step / steps, as NAS-Bench-201's xautodl schedulers)
            instead of once per epoch (t = epoch, as DARTS).
    """

    def __init__(self, lr_min: float = 0.0, per_step: bool = False):
        if lr_min < 0:
            raise ValueError(f"lr_min={lr_min} must be >= 0")
        self.lr_min, self.per_step = lr_min, per_step

    def __call__(self, lr: float, t: float, epochs: int) -> float:
        """The rate at epoch t (fractional when per_step) given the base rate ``lr``."""
        return self.lr_min + (lr - self.lr_min) * (1 + math.cos(math.pi * t / epochs)) / 2


class Exponential:
    """The base rate times gamma^epoch (DARTS cnn/train_imagenet.py: StepLR(step_size=1, gamma=0.97)), never below
    ``lr_min``; ``per_step``: gamma^t at every step (t fractional) instead of once per epoch. With ``lr_min`` 0 and
    ``per_step`` false (the defaults, as a recipe written over a cosine one keeps them) it is StepLR's."""

    def __init__(self, gamma: float = 0.97, lr_min: float = 0.0, per_step: bool = False):
        if not 0 < gamma <= 1:
            raise ValueError(f"scheduler.gamma={gamma} must lie in (0, 1]")
        if lr_min < 0:
            raise ValueError(f"scheduler.lr_min={lr_min} must be >= 0")
        self.gamma, self.lr_min, self.per_step = gamma, lr_min, per_step

    def __call__(self, lr: float, t: float, epochs: int) -> float:
        """The rate at epoch t."""
        return max(self.lr_min, lr * self.gamma ** (t if self.per_step else math.floor(t)))
