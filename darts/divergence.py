"""The divergence guard: a non-finite loss, weight or arch parameter stops a run with one line that names what went
non-finite, where, and the setting most likely at fault; the run keeps its last good checkpoint and writes no result.

``Diverged`` is structured: whoever notices the non-finite value says what it was (``quantity``, whether it is an
arch parameter, the step); the run that catches it adds where (``at``: the run, the epoch, the setting to lower).
"""
from __future__ import annotations

from dataclasses import astuple, dataclass, replace
from typing import Iterable

import torch


@dataclass(eq=False)
class Diverged(RuntimeError):
    """A non-finite value: the run stops with this message and writes no result.

    Args:
        quantity: what went non-finite (``loss``, ``arch parameters``, a parameter's name).
        step: the step of the epoch it was first seen at (None: after the epoch, or on some rank).
        arch: whether it is an architecture parameter (a strategy's learning rate is then most likely at fault).
        run: the run it stopped (``the search``), added by ``at``.
        epoch: the epoch it happened in, added by ``at``.
        setting: the setting most likely at fault (``optimizer.lr=0.025``), added by ``at``.
        kept: whether the run keeps a last good checkpoint (a candidate's training keeps none).
    """

    quantity: str
    step: int | None = None
    arch: bool = False
    run: str | None = None
    epoch: int | None = None
    setting: str | None = None
    kept: bool = True

    def at(self, run: str, epoch: int, setting: str, kept: bool = True) -> Diverged:
        """This divergence as ``run`` reports it: in ``epoch``, ``setting`` most likely too large."""
        return replace(self, run=run, epoch=epoch, setting=setting, kept=kept)

    def __reduce__(self) -> tuple:
        return type(self), astuple(self)  # picklable (a launcher's job process sends it back)

    def __str__(self) -> str:
        where = f"non-finite {self.quantity}" + ("" if self.step is None else f" at step {self.step}")
        if self.run is None:
            return where
        if not self.kept:
            last = "no result was written"
        else:
            last = f"epoch {self.epoch - 1}" if self.epoch else "none: it diverged in its first epoch"
            last = f"the last good checkpoint ({last}) is kept and no result was written"
        return (f"{self.run} diverged in epoch {self.epoch}: {where}; most likely {self.setting} is too large "
                f"(lower it); {last}")


def check_finite(named: Iterable[tuple[str, torch.Tensor]], arch: bool = False) -> None:
    """Diverged naming the first tensor with a non-finite value (one host sync for all of them); ``arch``: they are
    architecture parameters."""
    named = list(named)
    if not named:
        return
    names, tensors = zip(*named)
    finite = torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).tolist()
    if not all(finite):
        raise Diverged(names[finite.index(False)], arch=arch)
