"""Less memory for the same numbers (``memory.checkpoint``, ``darts.context.Context``): recomputation in backward.

Levels, each including the one before:
- ``norms`` (the default): a mixed op's sum ``sum_k w_k * norm_k(z_k)`` keeps each op's input to its last affine-free
  batch norm, not the norm's output, and recomputes the normalisation in backward (``norm_sum``). The batch norm
  stores that input anyway, so each such op's output is not kept a second time for ``w_k``'s gradient.
- ``cells``: a checkpointed cell keeps only its inputs in forward and recomputes its nodes in backward (non-reentrant
  ``torch.utils.checkpoint``, which replays the random stream of ops such as RobustDARTS's noise). The recomputation
  runs with the same mixing weights, so a sampling strategy's ops are the same; its batch norms do not update their
  running statistics a second time. A retraining network's cells are checkpointed the same way (``checkpoint_each``;
  their drop-path masks replayed).
Passes whose weights are swapped in (``functional_call``: DARTS's unrolled step) run their cells plainly
(``plain_cells``); passes that take second derivatives (the Hessian monitor) recompute nothing (``no_recomputation``).
"""
from __future__ import annotations

import contextlib
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

_PLAIN: ContextVar[int] = ContextVar("plain", default=0)  # 1: cells run plainly (plain_cells); 2: nothing recomputed


@contextmanager
def _plain(level: int) -> Iterator[None]:
    """Recomputation turned off up to ``level`` for the duration."""
    token = _PLAIN.set(max(level, _PLAIN.get()))
    try:
        yield
    finally:
        _PLAIN.reset(token)


def plain_cells() -> contextlib.AbstractContextManager[None]:
    """Cells computed plainly for the duration: for passes whose weights are swapped in (``functional_call``), which
    a cell's recomputation after the swap would not see (the norms' recomputation holds no weights: it stays on)."""
    return _plain(1)


def no_recomputation() -> contextlib.AbstractContextManager[None]:
    """Nothing recomputed for the duration: for passes differentiated twice (the Hessian monitor), whose second
    derivatives must run through the plain computation."""
    return _plain(2)


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


def cells_plain() -> bool:
    """Whether cells run plainly here (inside ``plain_cells`` or ``no_recomputation``)."""
    return _PLAIN.get() >= 1


def norms_plain() -> bool:
    """Whether the norms are kept rather than recomputed here (inside ``no_recomputation``)."""
    return _PLAIN.get() >= 2


def recomputed(module: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with its activations recomputed in backward; ``module``'s batch norms count the batch once."""
    return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), frozen_statistics(module)))


Term = tuple[int, "nn.BatchNorm2d | None"]  # (op index k, the affine-free norm applied to z_k, or None: z_k is y_k)


def norm_sum(weights: torch.Tensor, terms: Sequence[Term], zs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_k weights[k] * norm_k(z_k)`` over ``terms`` (in order), keeping the z_k, not the norms' outputs; the
    batch norms update their running statistics once, in forward, as when called plainly.

    Args:
        weights: [K] mixing weights of the edge.
        terms: (k, norm) per term; norm None adds ``weights[k] * z_k`` (an output kept alive anyway, e.g. a shared
            pool's or the identity's).
        zs: (B, C, H, W) per term, the norm's input.
    """
    device = zs[0].device.type
    amp = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
    return _NormSum.apply(weights, list(terms), amp, *zs)


class _NormSum(torch.autograd.Function):
    """``norm_sum``'s autograd. Backward recomputes each norm's output from its input and the batch statistics kept
    from forward (one elementwise pass: no second reduction) for the weight's gradient, and the input's gradient is
    the batch norm's own backward kernel; differentiated twice, it recomputes the sum differentiably."""

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, terms: list[Term], amp: tuple, *zs: torch.Tensor) -> torch.Tensor:
        ctx.terms, ctx.amp = terms, amp
        ctx.modes = [None if norm is None else _mode(norm) for _, norm in terms]
        normed = [None if norm is None else _batch_norm(norm, z) for (_, norm), z in zip(terms, zs)]
        ctx.stats = [None if n is None else n[1:] for n in normed]  # (mean [C], inverse std [C]) of each batch
        ctx.save_for_backward(weights, *zs)
        return _weighted(weights, terms, [z if n is None else n[0] for n, z in zip(normed, zs)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        if torch.is_grad_enabled():  # create_graph: a second derivative will follow
            return _recomputed_backward(ctx, grad)
        weights, *zs = ctx.saved_tensors
        grad_w = torch.zeros_like(weights) if ctx.needs_input_grad[0] else None
        grads = []
        for (k, norm), mode, stats, z, need in zip(ctx.terms, ctx.modes, ctx.stats, zs, ctx.needs_input_grad[3:]):
            if grad_w is not None:
                y = z if norm is None else _output(z, norm.eps, mode, stats)
                grad_w[k] += (grad * y).sum().to(weights.dtype)  # d/dw_k of w_k * y_k
            g = grad * weights[k].to(grad.dtype) if need else None  # (B, C, H, W): d/dy_k
            grads.append(g if g is None or norm is None else _norm_backward(g, z, norm.eps, mode, stats))
        return (grad_w, None, None, *grads)


def _recomputed_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    """The backward as autograd of the recomputed sum, on aliases of the saved tensors, which stay differentiable (an
    alias, not the tensor, so that a z computed from another z, a shared pool of an identity's input, gets only its
    own path): what a second derivative needs."""
    weights, *zs = ctx.saved_tensors
    needs = ctx.needs_input_grad
    with torch.enable_grad(), torch.autocast(ctx.amp[0], dtype=ctx.amp[1], enabled=ctx.amp[2]):
        w, xs = weights.view_as(weights), [z.view_as(z) for z in zs]
        ys = [x if mode is None else _normalise(x, norm, mode) for (_, norm), mode, x in zip(ctx.terms, ctx.modes, xs)]
        out = _weighted(w, ctx.terms, ys)
        wanted = [t for t, need in zip((w, *xs), (needs[0], *needs[3:])) if need]
        found = iter(torch.autograd.grad(out, wanted, grad, create_graph=True, allow_unused=True) if wanted else ())
    return (next(found) if needs[0] else None, None, None, *(next(found) if n else None for n in needs[3:]))


def _weighted(weights: torch.Tensor, terms: Sequence[Term], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over terms of weights[k] * y, in the mixed op's order and dtype (bf16 under autocast)."""
    out = None
    for (k, _), y in zip(terms, ys):
        y = weights[k].to(y.dtype) * y
        out = y if out is None else out + y
    return out


def _mode(norm: nn.BatchNorm2d) -> tuple[bool, torch.Tensor | None, torch.Tensor | None]:
    """How ``norm`` normalises now: (batch statistics?, the running statistics it uses otherwise)."""
    batch = norm.training or norm.running_mean is None
    return batch, None if batch else norm.running_mean.clone(), None if batch else norm.running_var.clone()


def _normalise(z: torch.Tensor, norm: nn.BatchNorm2d, mode: tuple) -> torch.Tensor:
    """``norm(z)`` as it was computed in forward, without touching its running statistics."""
    batch, mean, var = mode
    if batch and norm.running_mean is not None:  # the same kernel path as forward's (which had running statistics)
        mean, var = norm.running_mean.clone(), norm.running_var.clone()
    return F.batch_norm(z, mean, var, None, None, batch, 0.0, norm.eps)


def checkpoint_each(modules: nn.ModuleList) -> None:
    """Recompute each module of ``modules`` (a network's ``cells``) in backward while gradients are on, in place: its
    forward is wrapped, its parameters and state-dict keys unchanged. Drop-path masks are replayed (the random stream
    is restored for the recomputation) and batch norms count the batch once (``recomputed``)."""
    for module in modules:
        module.forward = _recomputing(module, module.forward)


def _recomputing(module: nn.Module, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, recomputed in backward when gradients are on and recomputation is not turned off."""
    def call(*args: Any) -> Any:
        return recomputed(module, forward, *args) if torch.is_grad_enabled() and not cells_plain() else forward(*args)
    return call


def _batch_norm(norm: nn.BatchNorm2d, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(norm(z), batch mean [C], batch inverse std [C]): the kernel ``nn.BatchNorm2d.forward`` calls on CPU, with its
    running statistics and batch count updated as there (torch/nn/modules/batchnorm.py ``_BatchNorm.forward``)."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    batch = norm.training or (norm.running_mean is None and norm.running_var is None)
    track = not norm.training or norm.track_running_stats
    return torch.native_batch_norm(z, None, None, norm.running_mean if track else None,
                                   norm.running_var if track else None, batch, factor, norm.eps)


def _output(z: torch.Tensor, eps: float, mode: tuple, stats: tuple) -> torch.Tensor:
    """The norm's output (z - mean) * invstd again, from the statistics it used: the batch's, or the running ones."""
    batch, running_mean, running_var = mode
    mean, invstd = stats if batch else (running_mean, torch.rsqrt(running_var + eps))
    return (z - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)


def _norm_backward(grad: torch.Tensor, z: torch.Tensor, eps: float, mode: tuple, stats: tuple) -> torch.Tensor:
    """d/dz of an affine-free batch norm, given d/dy (the kernel autograd runs for it)."""
    batch, running_mean, running_var = mode
    mean, invstd = stats
    return torch.ops.aten.native_batch_norm_backward(grad, z, None, running_mean, running_var, mean, invstd, batch,
                                                     eps, [True, False, False])[0]
