"""Learning-rate schedules in closed form: the rate at (fractional) epoch t of a run of ``epochs`` epochs.

Being functions of (t, epochs) rather than stateful schedulers, they need no state in checkpoints, and
a resumed run given a larger ``epochs`` replans the epochs it has not run yet.
"""
from __future__ import annotations

import math


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
    """The base rate times gamma^epoch (DARTS cnn/train_imagenet.py: StepLR(step_size=1, gamma=0.97))."""

    per_step = False

    def __init__(self, gamma: float = 0.97):
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma={gamma} must lie in (0, 1]")
        self.gamma = gamma

    def __call__(self, lr: float, t: float, epochs: int) -> float:
        """The rate at epoch t."""
        return lr * self.gamma ** math.floor(t)
