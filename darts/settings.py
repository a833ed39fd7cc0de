"""Checks of settings, called by the component that owns each setting when it is built: one line naming the setting,
the bad value and the valid ones (``epochs=0 is not valid: an integer >= 1``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(key: str, value: Any, low: int = 0, nullable: bool = False) -> None:
    """ValueError unless ``value`` is an integer >= ``low`` (or None, when ``nullable``)."""
    if nullable and value is None:
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{key}={value!r} is not valid: {'null or ' if nullable else ''}an integer >= {low}")


def number(key: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = True, nullable: bool = False, unit: str = "") -> None:
    """ValueError unless ``value`` is a number in the interval from ``low`` to ``high`` (open or closed at each end;
    None = unbounded), or None when ``nullable``."""
    if nullable and value is None:
        return
    ok = _is_number(value) and (low is None or (value > low if low_open else value >= low)) \
        and (high is None or (value < high if high_open else value <= high))
    if not ok:
        if low is not None and high is not None:
            what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            what = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            what = "a number"
        raise ValueError(f"{key}={value!r} is not valid: {'null or ' if nullable else ''}{what}{unit}")


@dataclass(frozen=True)
class SGD:
    """SGD on the network weights, as the DARTS scripts train them (cnn/train_search.py, cnn/train.py); checked when
    built.

    Args:
        lr: the initial learning rate.
        lr_min: the rate the search's per-epoch cosine anneals to (a retraining names its schedule apart).
        momentum, nesterov, weight_decay: ``torch.optim.SGD``'s.
        grad_clip: gradient-norm clipping (None = none).
        prefix: the settings' config node, named in errors (``optimizer``).
    """

    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    nesterov: bool = False
    prefix: str = "optimizer"

    def __post_init__(self) -> None:
        number(f"{self.prefix}.lr", self.lr, 0, low_open=True)
        number(f"{self.prefix}.lr_min", self.lr_min, 0)
        number(f"{self.prefix}.momentum", self.momentum, 0, 1)
        number(f"{self.prefix}.weight_decay", self.weight_decay, 0)
        number(f"{self.prefix}.grad_clip", self.grad_clip, 0, low_open=True, nullable=True)

    def build(self, params: Any) -> torch.optim.SGD:
        """``torch.optim.SGD`` over ``params`` at the initial rate."""
        return torch.optim.SGD(params, self.lr, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)
