"""Search, train and evaluate loops: plain functions, no algorithm-specific branches.

Metrics accumulate on the device and are read back once per epoch (or per progress-bar refresh),
so the hot loop has no host syncs.
"""
from __future__ import annotations

from contextlib import contextmanager
from itertools import islice
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from darts.distributed import SINGLE, Distributed
from darts.divergence import Diverged
from darts.context import autocast

REFRESH = 50  # steps between progress-bar refreshes (each one is a host sync)
Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, H, W), labels (B,)


class Meter:
    """Running sums of loss and correct predictions, and the first step at which the loss (or anything ``note``d)
    was not finite, all on the device: no host sync until ``result``, which sums over the ranks of ``dist``."""

    def __init__(self, device: torch.device, dist: Distributed = SINGLE):
        self.device, self.dist = device, dist
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.first_nonfinite: dict[str, torch.Tensor] = {}
        self.n = self.steps = 0

    def note(self, what: str, finite: torch.Tensor) -> None:
        """Record this step as the first at which ``what`` was not finite, if it is and none was before."""
        first = self.first_nonfinite.get(what, torch.full((), -1, dtype=torch.long, device=self.device))
        self.first_nonfinite[what] = torch.where((first < 0) & ~finite, self.steps, first)

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: mean loss (scalar), logits (B, K), labels (B,); ends the step."""
        loss = loss.detach()
        self.note("loss", torch.isfinite(loss))
        self.loss += loss * y.numel()
        self.correct += (logits.detach().argmax(-1) == y).sum()
        self.n += y.numel()
        self.steps += 1

    def result(self) -> dict[str, float]:
        """Mean loss and accuracy (%) so far over every rank (one host sync, one all-reduce); Diverged naming the
        first non-finite step (of any rank), if any."""
        names = list(self.first_nonfinite)
        n = torch.tensor(float(self.n), device=self.device)
        # a rank's "first non-finite step" is summed as step + 1 (0 = none), so any rank's divergence shows on all
        firsts = [self.first_nonfinite[k].float() + 1 for k in names]
        loss, correct, n, *firsts = self.dist.sum(torch.stack([self.loss, self.correct.float(), n, *firsts])).tolist()
        bad = sorted((step, what) for what, step in zip(names, firsts) if step > 0)
        if bad:
            where = f" at step {int(bad[0][0]) - 1}" if self.dist.world == 1 else " (on some rank)"
            raise Diverged(f"non-finite {bad[0][1]}{where}")
        n = max(n, 1)
        return {"loss": loss / n, "acc": 100.0 * correct / n}

    def running(self) -> dict[str, float]:
        """This rank's mean loss and accuracy so far, for a progress bar (one host sync, no collective)."""
        n = max(self.n, 1)
        return {"loss": float(self.loss) / n, "acc": 100.0 * float(self.correct) / n}


@contextmanager
def frozen(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Temporarily stop gradients to ``params`` (the weight step needs none for the arch parameters)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def progress_bar(it: Iterable, total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(it, total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(model: nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer, steps: int,
                device: torch.device, loss_fn: Callable[[object, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                grad_clip: float | None = None, desc: str = "train", progress: bool = True,
                amp_dtype: torch.dtype | None = None, lr_at_step: Callable[[int], float] | None = None,
                dist: Distributed = SINGLE) -> dict[str, float]:
    """One epoch of plain training; ``loss_fn(model_output, y) -> (loss, logits)``; the forward and the loss
    run under autocast to ``amp_dtype`` when it is set (weights, gradients and optimizer stay fp32);
    ``lr_at_step(step)``, when given, sets the learning rate before each step (per-step schedules); with several
    ranks ``model`` is the DistributedDataParallel wrapper, which averages the gradients before clipping."""
    model.train()
    meter = Meter(device, dist)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bar = progress_bar(islice(loader, steps), steps, desc, progress)
    for step, (x, y) in enumerate(bar):
        if lr_at_step is not None:
            set_lr(optimizer, lr_at_step(step))
        optimizer.zero_grad(set_to_none=True)
        with autocast(device.type, amp_dtype):
            loss, logits = loss_fn(model(x), y)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        meter.update(loss, logits, y)
        if progress and step % REFRESH == 0:
            bar.set_postfix(meter.running())
    return meter.result()


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[Batch], steps: int,
             device: torch.device, desc: str = "eval", progress: bool = True,
             amp_dtype: torch.dtype | None = None, dist: Distributed = SINGLE) -> dict[str, float]:
    """Mean cross-entropy and accuracy (%) of ``forward(x) -> logits`` over up to ``steps`` batches (under autocast
    to ``amp_dtype`` when it is set), over every rank's batches."""
    meter = Meter(device, dist)
    for x, y in progress_bar(islice(loader, steps), steps, desc, progress):
        with autocast(device.type, amp_dtype):
            logits = forward(x)
            loss = F.cross_entropy(logits, y)  # autocast computes it in fp32
        meter.update(loss, logits, y)
    return meter.result()
