"""Activation checkpointing of the supernet's cells (``memory.checkpoint=cells``, ``darts.context.Context``).

A checkpointed cell keeps only its inputs in forward and recomputes its nodes in backward (non-reentrant
``torch.utils.checkpoint``, which replays the random stream of ops such as RobustDARTS's noise). The recomputation
runs with the same mixing weights, so a sampling strategy's ops are the same; its batch norms do not update their
running statistics a second time. Passes whose weights are swapped in (``functional_call``: DARTS's unrolled step) or
that take second derivatives (the Hessian monitor) run the cells plainly (``plain_cells``).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Callable, Iterator

import torch.nn as nn
from torch.utils.checkpoint import checkpoint

_PLAIN: ContextVar[bool] = ContextVar("plain", default=False)  # inside plain_cells(): no checkpointing


@contextmanager
def plain_cells() -> Iterator[None]:
    """No activation checkpointing for the duration: for passes whose weights are swapped in (``functional_call``),
    which a recomputation after the swap would not see."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


@contextmanager
def frozen_statistics(module: nn.Module) -> Iterator[None]:
    """Batch norms of ``module`` that do not update their running statistics (momentum 0, batch count restored): the
    recomputation of a checkpointed cell must not count its batch twice."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def plain() -> bool:
    """Whether checkpointing is off here (inside ``plain_cells``)."""
    return _PLAIN.get()


def recomputed(module: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with its activations recomputed in backward; ``module``'s batch norms count the batch once."""
    return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), frozen_statistics(module)))
