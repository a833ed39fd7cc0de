"""The bilevel search epoch (DARTS Alg. 1): per step an arch step on a validation batch, then a weight step."""
from __future__ import annotations

from contextlib import nullcontext
from itertools import islice
from typing import Iterable

import torch
import torch.nn as nn

from darts.hypergradients.base import Hypergradient
from darts.strategies.base import Strategy
from darts.training import ARCH, REFRESH, Batch, Meter, frozen, progress_bar


def search_epoch(supernet: nn.Module, strategy: Strategy, train_loader: Iterable[Batch], valid_loader: Iterable[Batch],
                 optimizer: torch.optim.Optimizer, grad_clip: float, steps: int, desc: str = "search",
                 hyper: Hypergradient | None = None) -> dict[str, float]:
    """One bilevel epoch: per step an arch step on a validation batch, then a weight step (DARTS Alg. 1) through
    ``supernet`` (with several ranks, its DistributedDataParallel wrapper, which averages the weights' gradients
    before clipping; the strategy averages its own); the strategy's context gives device, ranks and progress. With
    ``hyper``, the training hyperparameters step on the same validation batch, inside the weight step."""
    context = strategy.context
    supernet.train()
    meter = Meter(context.device, context.dist)
    weights = [p for g in optimizer.param_groups for p in g["params"]]
    bar = progress_bar(islice(zip(train_loader, valid_loader), steps), steps, desc, context.bars)
    arch = strategy.arch_parameters()
    for step, (train, valid) in enumerate(bar):
        if strategy.arch_active:
            strategy.arch_step(train, valid, optimizer)
            if strategy.budget is not None:  # the derived genotype's exact cost (LightNAS's multiplier follows it)
                strategy.budget.observe(strategy.genotype())
            meter.note(ARCH, torch.stack([torch.isfinite(a).all() for a in arch]).all())
        x, y = train
        optimizer.zero_grad(set_to_none=True)
        with frozen(arch):
            logits = supernet(x, strategy.weight_mixing(train))
            loss = strategy.weight_loss(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(weights, grad_clip)
        with nullcontext() if hyper is None else hyper.update(train, valid):
            optimizer.step()
        meter.update(loss, logits, y)
        if context.bars and step % REFRESH == 0:
            bar.set_postfix(meter.running())
    return meter.result()
