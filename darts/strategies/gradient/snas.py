"""SNAS: Stochastic Neural Architecture Search (Xie, Zheng, Liu and Lin, ICLR 2019).

Each edge's op weights are a relaxed one-hot sample of the Concrete (Gumbel-softmax) distribution over its ops
(paper sec. 2.2, eq. 2-5):

    Z = softmax((alpha + G) / tau),  G_k ~ Gumbel(0, 1),

every op computed and weighted by Z (softmax(alpha) stands in for alpha: the softmax is shift-invariant). One sample
per cell type per forward pass: the cells of a type share it (``--resample_layer`` off). SNAS is single-level: the
weights and the alphas descend the same objective, the training loss of the sampled network (sec. 2.3), and
train_search.py takes both gradients from one backward pass on the training batch. Here the arch step takes the
alphas' gradient on the training batch with a fresh sample and the weight step then trains under that same sample;
the weights have not moved in between, so the pair is the official joint step in two passes (the validation half
only scores the epochs). The alphas' gradient is clipped to norm 10 (``clip_grad_norm_(arch_parameters, 10.)``) and
SGD steps them (lr 3e-4, no momentum, no weight decay: the single-process train_search.py; its multi-GPU path uses
Adam with betas (0.5, 0.999) and weight decay 1e-3, ``arch_optimizer="adam"``). The temperature anneals linearly,
stepped once before each epoch (utils.py ``Temp_Scheduler``, whose T is the official 150 epochs):

    tau_e = tau_min + (tau_init - tau_min) * (1 - (e + 1) / T),   e = 0 .. T-1 (tau_{T-1} = tau_min).

The alphas start from N(1, 0.01) (``--loc_mean 1 --loc_std 0.01``); the genotype is the space's rule on
softmax(alpha) (model_search.py ``genotype``). Code: SNAS-Series/SNAS-Series SNAS/model_search.py
(``_get_categ_mask``, ``forward``), SNAS/train_search.py, SNAS/utils.py, SNAS/README.md (the search command).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.strategies.gradient.gdas import Tempered, gumbel_noise, gumbel_softmax
from darts.supernet import Mixing, Supernet
from darts.training import Batch
from search_spaces.base import SearchSpace

INIT_MEAN, INIT_STD = 1.0, 0.01  # train_search.py --loc_mean 1, --loc_std 0.01: alphas ~ N(1, 0.01)
ARCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    # train_search.py: one process, SGD(arch_parameters, lr=arch_learning_rate); several, Adam(betas=(0.5, 0.999))
    "sgd": lambda params, lr, betas, wd: torch.optim.SGD(params, lr=lr, weight_decay=wd),
    "adam": lambda params, lr, betas, wd: torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd),
}


def capped_gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    """Gumbel noise [E, K] with the +inf of a zero exponential draw (2^-24 per entry in fp32) capped at -log(tiny):
    its op still wins the edge, and the weights stay finite (the official draw gives NaN weights then)."""
    return gumbel_noise(like).clamp_max(-math.log(torch.finfo(like.dtype).tiny))


class SNAS(Tempered):
    """Gumbel-softmax op weights, single-level updates of the alphas and the weights, tau annealed per epoch.

    Args:
        tau_init, tau_min: the temperature's start and floor (README: ``--temp 1 --temp_min 0.03``).
        anneal: anneal tau (README ``--temp_annealing``); False keeps tau_init.
        arch_optimizer: ``sgd`` (single process) or ``adam`` (multi-GPU), as train_search.py ``init_optimizer``.
        arch_lr, arch_betas, arch_weight_decay: its settings (train_search.py: lr 3e-4; Adam: betas (0.5, 0.999),
            weight decay 1e-3; the single-process SGD has none).
        arch_grad_clip: the alphas' gradient norm is clipped to it (train_search.py: 10).
        arch_start_epoch: epochs of weight-only training (with fresh samples) before the alphas move (official: 0).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``; OLES takes the
            validation gradients from a pass of its own (SNAS's arch step is on the training batch).
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, tau_init: float = 1.0, tau_min: float = 0.03,
                 anneal: bool = True, arch_optimizer: str = "sgd", arch_lr: float = 3e-4,
                 arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 0.0,
                 arch_grad_clip: float = 10.0, arch_start_epoch: int = 0, **early_stop: Any):
        if not 0 < tau_min <= tau_init:
            raise ValueError(f"SNAS needs 0 < tau_min <= tau_init, got tau_min={tau_min!r}, tau_init={tau_init!r}")
        if arch_optimizer not in ARCH_OPTIMIZERS:
            raise ValueError(f"strategy.arch_optimizer={arch_optimizer!r} is not valid; choose one of "
                             f"{tuple(ARCH_OPTIMIZERS)}")
        if not arch_grad_clip > 0:
            raise ValueError(f"strategy.arch_grad_clip={arch_grad_clip!r} must be > 0")
        super().__init__(supernet, space, 1, arch_lr, arch_betas, arch_weight_decay, arch_start_epoch=arch_start_epoch,
                         **early_stop)
        with torch.no_grad():
            for a in self.arch_parameters():
                a.normal_(INIT_MEAN, INIT_STD)
        self.arch_optimizer = ARCH_OPTIMIZERS[arch_optimizer](self.arch_parameters(), arch_lr, tuple(arch_betas),
                                                              arch_weight_decay)
        self.tau_init, self.tau_min, self.anneal, self.arch_grad_clip = tau_init, tau_min, anneal, arch_grad_clip
        self.tau = tau_init
        self._noise: dict[str, torch.Tensor] | None = None  # fixed Gumbel noise per cell type inside one_sample()
        self._drawn: dict[str, Mixing] | None = None  # the arch step's sample, for the weight step that follows

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """tau = tau_min + (tau_init - tau_min) * (1 - (epoch + 1) / epochs), at least tau_min (Temp_Scheduler)."""
        super().epoch_start(epoch, epochs)
        if self.anneal:
            self.tau = max(self.tau_min, self.tau_min + (self.tau_init - self.tau_min) * (1 - (epoch + 1) / epochs))

    def mixing(self) -> dict[str, Mixing]:
        """A Gumbel-softmax sample [E, K] per cell type at the current tau (inside ``one_sample``, the same noise)."""
        noise = self._noise or {}
        return {t: Mixing(gumbel_softmax(a, self.tau, noise[t] if t in noise else capped_gumbel_noise(a)))
                for t, a in zip(self.supernet.cell_types, self.supernet.arch_parameters())}

    @contextmanager
    def one_sample(self) -> Iterator[None]:
        """One Gumbel draw per cell type for the duration."""
        self._noise = {t: capped_gumbel_noise(a) for t, a in zip(self.supernet.cell_types, self.arch_parameters())}
        try:
            yield
        finally:
            self._noise = None

    def arch_step(self, train: Batch, valid: Batch, weight_optimizer: torch.optim.Optimizer) -> None:
        """One step of the alphas on the training loss of a fresh sample, which the weight step then reuses
        (train_search.py: one backward pass for both; the alphas' gradient norm clipped to ``arch_grad_clip``)."""
        params = self.arch_parameters()
        x, y = train
        with self.one_sample():
            drawn = self.mixing()
        loss = F.cross_entropy(self.supernet(x, drawn), y)
        if self.budget is not None:
            loss = self.budget.penalise(loss, drawn)
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            p.grad = None if g is None else g.detach()
        self.dist.mean_grads(params)  # train_search.py: reduce_tensorgradients, then clip
        nn.utils.clip_grad_norm_(params, self.arch_grad_clip)
        self.arch_optimizer.step()
        self._drawn = {t: Mixing(m.weights.detach()) for t, m in drawn.items()}
        self.match_gradients(valid)

    def weight_mixing(self, train: Batch) -> dict[str, Mixing]:
        """The arch step's sample (the same network for both updates); a fresh one where no arch step ran."""
        drawn, self._drawn = self._drawn, None
        return drawn if drawn is not None else self.mixing()
