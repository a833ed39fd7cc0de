"""How an expected cost enters the arch objective: the published penalties, each a function of the task loss L and the
expected cost c (reported units: millions, or ms), with the target T.

- ProxylessNAS ``mul#log``: alpha * L * (log c / log T)^beta; ``add#linear``: L + lambda * (c - T) / T (Cai et al.,
  ICLR 2019, sec. 3.3; mit-han-lab/proxylessnas search/nas_manager.py ``add_regularization_loss``; defaults of
  search/imagenet_arch_search.py: alpha 0.2, beta 0.3, lambda 0.1).
- FBNet: L * alpha * log(c)^beta (Wu et al., CVPR 2019, eq. 2 and sec. 4.1: alpha 0.2, beta 0.6).
- TF-NAS: L + lambda * |c / T - 1| (Hu et al., ECCV 2020; AberHu/TF-NAS train_search.py: lambda_lat 0.1).
- LightNAS: L + lambda * (c / T - 1), the multiplier lambda updated after each arch step by gradient ascent on
  cost(argmax) / T - 1 (Luo et al., DAC 2022; stepbuystep/LightNAS search_imagenet.py: tradeoff 0, learning rate
  5e-4).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from darts.settings import number


class Penalty(ABC):
    """The arch objective as a function of the task loss and the expected cost, for a target ``target``."""

    def __init__(self, target: float):
        self.target = float(target)

    @abstractmethod
    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        """The penalised objective of task loss ``loss`` and expected cost ``cost`` (scalars)."""

    def observe(self, derived: float) -> None:
        """The exact cost of the genotype derived after an arch step (nothing by default)."""

    def scalars(self) -> dict[str, float]:
        """Values to log (nothing by default)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s state."""


class ProxylessMulLog(Penalty):
    """ProxylessNAS ``mul#log``: alpha * L * (log c / log T)^beta (nas_manager.py; alpha 0.2, beta 0.3 from
    imagenet_arch_search.py ``--grad_reg_loss_alpha/beta``). Needs c and T on the same side of 1 (a positive ratio of
    the logs)."""

    def __init__(self, target: float, alpha: float = 0.2, beta: float = 0.3):
        super().__init__(target)
        if self.target == 1.0:
            raise ValueError("cost.target=1 makes log(T) zero in ProxylessNAS's mul#log; choose another target")
        self.alpha, self.beta = alpha, beta

    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        ratio = cost.log() / math.log(self.target)
        if float(ratio.detach()) <= 0:
            raise ValueError(f"cost.penalty=proxyless_mul_log needs the expected cost ({float(cost):.4g}) and the "
                             f"target ({self.target:g}) on the same side of 1 (log c / log T > 0); use lightnas or tfnas")
        return self.alpha * loss * ratio ** self.beta


class ProxylessAddLinear(Penalty):
    """ProxylessNAS ``add#linear``: L + lambda * (c - T) / T (nas_manager.py; lambda 0.1 from imagenet_arch_search.py
    ``--grad_reg_loss_lambda``)."""

    def __init__(self, target: float, lam: float = 0.1):
        super().__init__(target)
        self.lam = lam

    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        return loss + self.lam * (cost - self.target) / self.target


class FBNet(Penalty):
    """FBNet: L * alpha * log(c)^beta (eq. 2; sec. 4.1: alpha 0.2, beta 0.6). The target only reports whether the
    derived network meets it: FBNet's loss has none. Needs c > 1 in its units."""

    def __init__(self, target: float, alpha: float = 0.2, beta: float = 0.6):
        super().__init__(target)
        self.alpha, self.beta = alpha, beta

    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        return loss * self.alpha * positive_log(cost, "fbnet") ** self.beta


class TFNAS(Penalty):
    """TF-NAS: L + lambda * |c / T - 1| (train_search.py: ``loss_l = torch.abs(lat / args.target_lat - 1.) *
    args.lambda_lat``, lambda_lat 0.1)."""

    def __init__(self, target: float, lam: float = 0.1):
        super().__init__(target)
        self.lam = lam

    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        return loss + self.lam * (cost / self.target - 1).abs()


class LightNAS(Penalty):
    """LightNAS's Lagrangian: L + lambda * (c / T - 1), lambda <- lambda + lr * (cost(argmax) / T - 1) after each arch
    step (search_imagenet.py: ``args.tradeoff += args.tradeoff_learning_rate * (latency_curr / args.target_latency -
    1)``, tradeoff 0, learning rate 5e-4).

    Args:
        lr: the multiplier's step size (5e-4).
        bound: True keeps lambda >= 0, a budget the derived network must stay within (an inequality constraint's
            multiplier); False is LightNAS's own ``tradeoff_trunc`` rule, which aims at the target from both sides
            (lambda reset to 0 when its sign disagrees with the violation's).
    """

    def __init__(self, target: float, lr: float = 5e-4, bound: bool = True):
        super().__init__(target)
        number("cost.penalty.lr", lr, 0, low_open=True)
        self.lr, self.bound = lr, bound
        self.lam = 0.0  # search_imagenet.py --tradeoff 0.

    def __call__(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        return loss + self.lam * (cost / self.target - 1)

    def observe(self, derived: float) -> None:
        """One ascent step on the derived genotype's violation."""
        violation = derived / self.target - 1
        self.lam += self.lr * violation
        if self.bound:
            self.lam = max(self.lam, 0.0)
        elif (violation > 0 and self.lam < 0) or (violation < 0 and self.lam > 0):  # search_imagenet.py trunc
            self.lam = 0.0

    def scalars(self) -> dict[str, float]:
        """The multiplier."""
        return {"lambda": self.lam}

    def state_dict(self) -> dict[str, Any]:
        """The multiplier."""
        return {"lambda": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the multiplier."""
        self.lam = float(state["lambda"])


def positive_log(cost: torch.Tensor, name: str) -> torch.Tensor:
    """log(c), ValueError if c <= 1 (the penalty's power of the log would not be real or would flip sign)."""
    if float(cost.detach()) <= 1.0:
        raise ValueError(f"cost.penalty={name} needs an expected cost above 1 in its units, got {float(cost.detach()):.4g}; "
                         "use tfnas, proxyless_add_linear or lightnas for costs this small")
    return cost.log()
