"""The divergence guard: a non-finite loss, weight or arch parameter stops a run with one line that names where it
happened and the setting most likely at fault; the run keeps its last good checkpoint and writes no result."""
from __future__ import annotations

from typing import Iterable

import torch


class Diverged(RuntimeError):
    """A non-finite loss or parameter: the run stops with this message and writes no result."""


def diverged(what: str, epoch: int, err: Diverged, setting: str) -> Diverged:
    """The one-line error of a run that diverged in ``epoch``: what went non-finite, the setting most likely at
    fault, and that the last good checkpoint is kept."""
    kept = f"epoch {epoch - 1}" if epoch else "none: it diverged in its first epoch"
    return Diverged(f"{what} diverged in epoch {epoch}: {err}; most likely {setting} is too large (lower it); the "
                    f"last good checkpoint ({kept}) is kept and no result was written")


def check_finite(named: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Diverged naming the first tensor with a non-finite value (one host sync for all of them)."""
    names, tensors = zip(*named)
    finite = torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).tolist()
    if not all(finite):
        raise Diverged(f"non-finite values in {names[finite.index(False)]}")
