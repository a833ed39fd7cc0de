"""DARTS-ES: early stopping on the dominant arch-Hessian eigenvalue (Zela et al., "Understanding and Robustifying
Differentiable Architecture Search", ICLR 2020, sec. 4.3; code: automl/RobustDARTS src/utils.py ``EVLocalAvg``).

The eigenvalue lambda (``darts.selections.hessian``, logged per measured epoch as ``hessian_eigenvalue`` in genotypes.jsonl) is
smoothed by a local average over ``window`` measurements centred on each one (truncated at the start, as
``EVLocalAvg.update``); after the newest measurement the newest complete average is that of measurement
i = n - 1 - window // 2. The search stops when

    mean_lambda(i - k) / mean_lambda(i) < threshold        (sec. 4.3: k = 5, T = 0.75)

and returns the genotype of the epoch of measurement i - k. As ``EVLocalAvg.early_stop``, the rule waits until that
epoch is at least ``min_epoch`` (``--es_start_epoch 10``), and the run never stops at its last epoch
(src/search/train_search.py). k and the window count measurements: epochs at ``hessian.every=1``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from darts.selections.hessian import EIGENVALUE
from darts.selections.base import Argmax, EarlyStop


def local_average(values: Sequence[float], i: int, window: int) -> float:
    """The mean of ``values`` over the ``window`` entries centred on entry i, cut at the start and the end."""
    half = window // 2
    part = values[max(0, i - half): i + half + 1]
    return sum(part) / len(part)


def eigenvalue_stop(epochs: Sequence[int], values: Sequence[float], threshold: float = 0.75, k: int = 5,
                    window: int = 5, min_epoch: int = 10) -> EarlyStop | None:
    """The rule (module docstring) after the newest of the measurements ``values`` taken at ``epochs``."""
    i = len(values) - 1 - window // 2
    if i - k < 0 or epochs[i - k] < min_epoch:
        return None
    current = local_average(values, i, window)
    ratio = local_average(values, i - k, window) / current if current else math.inf
    return EarlyStop(epochs[i - k], epochs[-1], ratio) if ratio < threshold else None


class DartsES(Argmax):
    """Stops the search by the R-DARTS rule (module docstring) and reports the genotype of epoch i - k; a search the
    rule never stops reports the strategy's own genotype.

    Args:
        threshold: T (sec. 4.3: 0.75; the official EVLocalAvg compares the inverse ratio with ``--factor 1.3``).
        k: measurements between the compared averages (sec. 4.3: 5 epochs).
        window: measurements per local average (sec. 4.3 and ``--window``: 5).
        min_epoch: the earliest epoch the rule may return (``--es_start_epoch``: 10).
        hessian_every: the run's ``hessian.every``, which must measure (>= 1).
    """

    name = "darts_es"

    def __init__(self, threshold: float = 0.75, k: int = 5, window: int = 5, min_epoch: int = 10,
                 hessian_every: int = 1):
        for key, value, low in (("k", k, 1), ("window", window, 1), ("min_epoch", min_epoch, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"selection.{key}={value!r} is not valid: an integer >= {low}")
        if not threshold > 0:
            raise ValueError(f"selection.threshold={threshold!r} is not valid: a number > 0")
        if hessian_every < 1:
            raise ValueError(f"selection=darts_es needs the eigenvalue: hessian.every={hessian_every} must be >= 1")
        self.threshold, self.k, self.window, self.min_epoch = threshold, k, window, min_epoch

    def stop(self, history: Sequence[Mapping[str, Any]]) -> EarlyStop | None:
        """The rule on the measured epochs of ``history``."""
        measured = [r for r in history if EIGENVALUE in r]
        return eigenvalue_stop([r["epoch"] for r in measured], [r[EIGENVALUE] for r in measured], self.threshold,
                               self.k, self.window, self.min_epoch)
