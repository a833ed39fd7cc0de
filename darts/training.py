"""The one training loop (``Trainer``: retraining, the evaluators' trainings, fine-tuning, distillation) and the
evaluation loop; the bilevel search step is the search's own (``darts.strategies.bilevel``).

Metrics accumulate on the device and are read back once per epoch (or per progress-bar refresh),
so the hot loop has no host syncs.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from darts.context import Context
from darts.distributed import SINGLE, Distributed
from darts.divergence import Diverged, check_finite
from darts.schedules import Schedule

REFRESH = 50  # steps between progress-bar refreshes (each one is a host sync)
ARCH = "arch parameters"  # what a search step notes when an arch step leaves them non-finite
Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, H, W), labels (B,)
Loss = Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (network output, labels) -> (loss, logits)
AroundStep = Callable[[Batch], AbstractContextManager]  # wraps the optimizer's step on a batch (hypergradients)


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
            step, what = bad[0]
            raise Diverged(what if self.dist.world == 1 else f"{what} (on some rank)",
                           int(step) - 1 if self.dist.world == 1 else None, arch=what == ARCH)
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
    """A transient progress bar over ``it`` (``total`` steps), shown when ``enabled``."""
    return tqdm(it, total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def cross_entropy(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of logits (B, K) and labels (B,): the plain loss of ``Trainer``."""
    return F.cross_entropy(output, y), output


def train_epoch(model: nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer, steps: int,
                context: Context, loss_fn: Loss = cross_entropy, grad_clip: float | None = None, desc: str = "train",
                lr_at_step: Callable[[int], float] | None = None, around_step: AroundStep | None = None,
                ) -> dict[str, float]:
    """One epoch of plain training; ``loss_fn(model_output, y) -> (loss, logits)``; the forward and the loss
    run under the context's autocast (weights, gradients and optimizer stay fp32); ``lr_at_step(step)``, when given,
    sets the learning rate before each step (per-step schedules); ``around_step((x, y))``, when given, wraps each
    optimizer step (a hypergradient method's ``update``); with several ranks ``model`` is the
    DistributedDataParallel wrapper, which averages the gradients before clipping."""
    model.train()
    meter = Meter(context.device, context.dist)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bar = progress_bar(islice(loader, steps), steps, desc, context.bars)
    for step, (x, y) in enumerate(bar):
        if lr_at_step is not None:
            set_lr(optimizer, lr_at_step(step))
        optimizer.zero_grad(set_to_none=True)
        with context.autocast():
            loss, logits = loss_fn(model(x), y)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        with nullcontext() if around_step is None else around_step((x, y)):
            optimizer.step()
        meter.update(loss, logits, y)
        if context.bars and step % REFRESH == 0:
            bar.set_postfix(meter.running())
    return meter.result()


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[Batch], steps: int,
             context: Context, desc: str = "eval") -> dict[str, float]:
    """Mean cross-entropy and accuracy (%) of ``forward(x) -> logits`` over up to ``steps`` batches (under the
    context's autocast), over every rank's batches."""
    meter = Meter(context.device, context.dist)
    for x, y in progress_bar(islice(loader, steps), steps, desc, context.bars):
        with context.autocast():
            logits = forward(x)
            loss = F.cross_entropy(logits, y)  # autocast computes it in fp32
        meter.update(loss, logits, y)
    return meter.result()


@dataclass
class Trainer:
    """Trains a network an epoch at a time with one recipe: the optimizer, the learning-rate schedule (per epoch or
    per step), the loss and gradient clipping (DARTS cnn/train.py's loop; NAS-Bench-201's per-step cosine).

    Args:
        model: what is trained (a DistributedDataParallel or distillation wrapper of the network allowed).
        optimizer: the weights' optimizer.
        loader: the training batches (``set_epoch`` reshuffles them per epoch).
        steps: steps per epoch.
        epochs: the schedule's length.
        lr: the base learning rate.
        schedule: the rate at (fractional) epoch t: ``schedule(lr, t, epochs)`` (``darts.schedules``).
        context: device, precision, ranks and progress.
        loss: ``loss(output, y) -> (loss, logits)``.
        grad_clip: gradient-norm clipping (None = none).
        watched: the module whose weights must stay finite (default: ``model``).
        desc: the progress bar's label.
        around_step: wraps each optimizer step on its batch (``train_epoch``; default: nothing).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    steps: int
    epochs: int
    lr: float
    schedule: Schedule
    context: Context
    loss: Loss = cross_entropy
    grad_clip: float | None = None
    watched: nn.Module | None = None
    desc: str = "epoch"
    around_step: AroundStep | None = None

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch``: its learning rate, its shuffle, one pass; Diverged (without the epoch: the caller
        adds it) on a non-finite loss or weight. Returns loss, acc and lr."""
        rate = self.schedule(self.lr, epoch, self.epochs)
        set_lr(self.optimizer, rate)
        per_step = None
        if self.schedule.per_step:  # NB201 functions.py: scheduler.update(None, i / len(loader)) before every step
            per_step = lambda step: self.schedule(self.lr, epoch + step / self.steps, self.epochs)  # noqa: E731
        self.loader.set_epoch(epoch)
        metrics = train_epoch(self.model, self.loader, self.optimizer, self.steps, self.context, self.loss,
                              self.grad_clip, f"{self.desc} {epoch}", per_step, self.around_step)
        check_finite((self.watched or self.model).named_parameters())
        return {**metrics, "lr": rate}

    def fit(self, run: str, setting: str, start: int = 0, after: Callable[[int, dict[str, float]], None] | None = None,
            kept: bool = True) -> dict[str, float]:
        """Train epochs ``start``..``epochs - 1``, calling ``after(epoch, metrics)`` after each; a divergence names
        ``run``, its epoch and ``setting``. Returns the last epoch's metrics."""
        metrics: dict[str, float] = {}
        for epoch in range(start, self.epochs):
            try:
                metrics = self.epoch(epoch)
            except Diverged as err:
                raise err.at(run, epoch, setting, kept) from None
            if after is not None:
                after(epoch, metrics)
        return metrics
