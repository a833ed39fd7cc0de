"""DrNAS: Dirichlet Neural Architecture Search (Chen et al., ICLR 2021).

Each edge's op mixing weights are a random variable theta ~ Dir(beta) whose concentration is a
positive transform of the arch parameters, beta = elu(alpha) + 1 (paper sec. 2). Every forward pass
draws a reparameterised sample (pathwise gradient), and the arch parameters minimise the
expected validation loss plus a regulariser pulling beta towards the anchor 1 (uniform Dirichlet):
  * ``reg_type="l2"`` (the official default): L2 on alpha, i.e. Adam weight decay ``reg_scale``;
  * ``reg_type="kl"``: ``reg_scale * sum_edges KL(Dir(beta) || Dir(1))`` added to the arch loss.
The genotype is derived from the Dirichlet mean beta / sum(beta).
Progressive learning (sec. 3.3, ``progressive=True``): the search runs in stages; the first trains a supernet of
partial channels (PC-DARTS's K, ``SupernetOptions.partial_channels``), and at each later stage's start every edge keeps
only its ``keep_ops`` ops of largest alpha (utils.py ``prune``; the others are skipped) and the mixed ops are widened
to the stage's smaller K (net2wider.py, ``darts.mixed_op``), the weight optimizer's momentum carried over; arch steps
start ``arch_start_epoch`` epochs into each stage (``train(..., e)`` with the epoch within the stage). A Dirichlet
over the kept ops is the official draw over all ops, masked and renormalised (the Dirichlet's aggregation property).
Code: xiangning-chen/DrNAS utils.py ``process_step_vector``, ``prune``, 201-space/search_model.py ``_get_kl_reg``,
architect.py (regulariser as Adam weight decay for l2), 201-space/train_search_progressive.py,
DARTS-space/train_search.py, net2wider.py.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet, SupernetOptions
from darts.mixed_op import carry_optimizer
from search_spaces.base import SearchSpace

REG_TYPES = ("l2", "kl")


class FixedDirichlet(torch.autograd.Function):
    """A given Dirichlet draw x [E, K'] of concentration c [E, K'], with the implicit reparameterisation gradient of
    torch's ``Dirichlet.rsample`` (torch/distributions/dirichlet.py ``_Dirichlet.backward``), so that one draw can
    enter several graphs with its pathwise gradient."""

    @staticmethod
    def forward(ctx, concentration: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, concentration)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, concentration = ctx.saved_tensors
        total = concentration.sum(-1, keepdim=True).expand_as(concentration)
        grad_c = torch._dirichlet_grad(x, concentration, total)  # dx/dc through the Gamma draws
        return grad_c * (grad - (x * grad).sum(-1, keepdim=True)), None


@dataclass(frozen=True)
class Stage:
    """One stage of progressive learning: its epochs, its mixed ops' partial channels K and, from the second stage
    on, the ops each edge keeps (None: all it has)."""

    epochs: int
    partial_channels: int
    keep_ops: int | None = None


class DrNAS(DARTS):
    """Dirichlet-sampled mixing weights with pathwise gradients on the concentrations.

    Args:
        reg_type, reg_scale: the regulariser towards the uniform anchor (see module docstring;
            201-space/train_search.py: ``--reg_type l2 --reg_scale 1e-3``).
        progressive, stages: progressive learning over ``stages`` (module docstring), each ``{epochs,
            partial_channels, keep_ops}``; the first stage's K is the supernet's, the epochs add up to the run's.
        order, arch_lr, arch_betas, fd_radius, arch_start_epoch: as ``DARTS`` (201-space
            train_search.py: first order, Adam lr 3e-4, betas (0.5, 0.999), arch steps from epoch 0; with
            progressive learning, counted from each stage's start).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, reg_type: str = "l2", reg_scale: float = 1e-3,
                 progressive: bool = False, stages: Sequence[Mapping[str, Any]] = (),
                 order: int = 1, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 fd_radius: float = 0.01, arch_start_epoch: int = 0, **early_stop: Any):
        if reg_type not in REG_TYPES:
            raise ValueError(f"strategy.reg_type={reg_type!r} is not valid; choose one of {REG_TYPES}")
        # architect.py: l2 is Adam's weight decay on alpha; kl adds its term to the loss, no weight decay
        super().__init__(supernet, space, order, arch_lr, arch_betas, reg_scale if reg_type == "l2" else 0.0,
                         fd_radius, arch_start_epoch, **early_stop)
        self.reg_type, self.reg_scale = reg_type, reg_scale
        self._draws: dict[str, torch.Tensor] | None = None  # a fixed draw per cell type inside one_sample()
        alphas = supernet.alphas
        self.kept = {t: torch.arange(a.shape[1], device=a.device).repeat(a.shape[0], 1)
                     for t, a in alphas.items()}  # [E, K'] per cell type: the ops each edge keeps
        self.progressive = progressive
        self.stages = [Stage(**stage) for stage in stages] if progressive else []
        if progressive:
            self._check_stages(supernet)
        self.samples_paths = self.samples_paths or progressive  # pruned ops are skipped: their weights get no gradient
        self.stage = self.pruned = 0  # the stage the supernet is shaped for; the last stage whose pruning was done
        self._kept_ops: dict[str, tuple[tuple[int, ...], ...]] | None = None  # self.kept on the host, once pruned

    @classmethod
    def supernet_options(cls, progressive: bool = False, stages: Sequence[Mapping[str, Any]] = (),
                         **settings: Any) -> SupernetOptions:
        """With progressive learning, partial channels at the first stage's K (DrNAS's progressive supernet)."""
        return SupernetOptions(partial_channels=stages[0]["partial_channels"] if progressive and stages else 1)

    def _check_stages(self, supernet: Supernet) -> None:
        """The stages: at least one, positive epochs, K dividing the previous stage's, the first K the supernet's."""
        k = supernet.structure.partial_channels
        if not self.stages or self.stages[0].partial_channels != k:
            first = self.stages[0].partial_channels if self.stages else None
            raise ValueError(f"strategy.stages[0].partial_channels={first} must equal the supernet's K={k} "
                             "(progressive learning starts from it; DrNAS.supernet_options builds it so)")
        for i, (a, b) in enumerate(zip(self.stages, self.stages[1:]), 1):
            if a.partial_channels % b.partial_channels or b.keep_ops is not None and b.keep_ops < 1:
                raise ValueError(f"strategy.stages[{i}]={b}: partial_channels must divide the previous stage's "
                                 f"({a.partial_channels}) and keep_ops be >= 1")
        if any(stage.epochs < 1 for stage in self.stages):
            raise ValueError(f"strategy.stages={self.stages}: every stage needs epochs >= 1")

    def concentrations(self) -> dict[str, torch.Tensor]:
        """beta = elu(alpha) + 1 > 0 over each edge's kept ops: [E, K'] per cell type."""
        return {t: F.elu(self.supernet.alphas[t].gather(1, self.kept[t])) + 1 for t in self.supernet.cell_types}

    def _full(self, t: str, w: torch.Tensor) -> torch.Tensor:
        """[E, K'] weights of cell type t's kept ops -> [E, K] with the others at 0 (differentiable)."""
        return w.new_zeros(self.supernet.alphas[t].shape).scatter(1, self.kept[t], w)

    def mixing(self) -> dict[str, Mixing]:
        """A reparameterised Dirichlet sample [E, K] per cell type (rows on the simplex); inside ``one_sample`` the
        same draw each time, with the same pathwise gradient."""
        # validate_args=False: the concentrations are positive by construction, and validation syncs with the host
        draw = (lambda t, c: Dirichlet(c, validate_args=False).rsample()) if self._draws is None else \
            (lambda t, c: FixedDirichlet.apply(c, self._draws[t]))
        kept = self._kept_ops or {}
        return {t: Mixing(self._full(t, draw(t, c)), kept=kept.get(t)) for t, c in self.concentrations().items()}

    @contextmanager
    def one_sample(self) -> Iterator[None]:
        """One Dirichlet draw per cell type for the duration (the unrolled second-order step)."""
        self._draws = {t: Dirichlet(c.detach(), validate_args=False).sample() for t, c in self.concentrations().items()}
        try:
            yield
        finally:
            self._draws = None

    def op_weights(self) -> dict[str, torch.Tensor]:
        """The Dirichlet mean beta / sum(beta) [E, K], detached."""
        return {t: self._full(t, c / c.sum(-1, keepdim=True)).detach() for t, c in self.concentrations().items()}

    def arch_penalty(self) -> torch.Tensor | None:
        """reg_scale * sum over edges of KL(Dir(beta) || Dir(1)) for reg_type 'kl' (201-space/search_model.py
        ``_get_kl_reg``); None for 'l2', which is Adam's weight decay."""
        if self.reg_type != "kl":
            return None
        return self.reg_scale * sum(kl_divergence(Dirichlet(c, validate_args=False),
                                                  Dirichlet(torch.ones_like(c), validate_args=False)).sum()
                                    for c in self.concentrations().values())

    def _stage_start(self, epoch: int) -> tuple[int, int]:
        """The stage ``epoch`` belongs to and the epoch that stage starts at (progressive learning)."""
        start = 0
        for i, stage in enumerate(self.stages):
            if epoch < start + stage.epochs or i == len(self.stages) - 1:
                return i, start
            start += stage.epochs
        return 0, 0

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """As DARTS; with progressive learning, the stages must add up to the run's epochs."""
        if self.progressive and sum(stage.epochs for stage in self.stages) != epochs:
            raise ValueError(f"strategy.stages run {sum(stage.epochs for stage in self.stages)} epochs but "
                             f"epochs={epochs}; make them equal")
        super().epoch_start(epoch, epochs)

    @property
    def arch_active(self) -> bool:
        """Arch steps from ``arch_start_epoch`` on, counted within each stage with progressive learning
        (train_search_progressive.py: ``if epoch >= 10`` on the stage's epoch)."""
        return self.epoch - self._stage_start(self.epoch)[1] >= self.arch_start_epoch

    def reshape(self, epoch: int, weight_optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
        """At a stage's start: prune each edge to the stage's ``keep_ops`` ops of largest alpha, widen the mixed ops
        to the stage's K (new channels copied from random old ones), and return the weight optimizer over the new
        weights with the momentum carried (train_search_progressive.py: ``pruning``, ``wider``,
        ``configure_optimizer``); on resume, the same for the checkpoint's stage (its pruning is in the state)."""
        target = self._stage_start(epoch)[0] if self.progressive else self.stage
        if target == self.stage:
            return None
        while self.stage < target:
            self.stage += 1
            stage = self.stages[self.stage]
            if self.pruned < self.stage:
                self._prune(stage.keep_ops)
                self.pruned = self.stage
            seed = self.dist.share(int(torch.randint(2**62, ())))  # the same new channels on every rank
            widened = self.supernet.widen(stage.partial_channels, torch.Generator().manual_seed(seed))
        return carry_optimizer(weight_optimizer, self.supernet.weight_parameters(), widened)

    def _prune(self, keep_ops: int | None) -> None:
        """Each edge keeps its ``keep_ops`` kept ops of largest alpha (utils.py ``prune``: topk of the alphas)."""
        for t in self.supernet.cell_types:
            alphas = self.supernet.alphas[t].detach().gather(1, self.kept[t])  # [E, K']
            top = alphas.topk(min(keep_ops or alphas.shape[1], alphas.shape[1]), dim=1).indices  # [E, keep_ops]
            self.kept[t] = self.kept[t].gather(1, top).sort(dim=1).values
        self._kept_ops = {t: tuple(map(tuple, k.tolist())) for t, k in self.kept.items()}

    def state_dict(self) -> dict[str, Any]:
        """As DARTS, with the ops each edge keeps and the last pruned stage."""
        return {**super().state_dict(), "kept": dict(self.kept), "pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (the supernet's shape follows in ``reshape``)."""
        super().load_state_dict(state)
        self.kept, self.pruned = dict(state.get("kept", self.kept)), state.get("pruned", 0)  # older runs: neither
        self._kept_ops = {t: tuple(map(tuple, k.tolist())) for t, k in self.kept.items()} if self.pruned else None

    def scalars(self) -> dict[str, Any]:
        """Entropy of the Dirichlet mean and the concentrations' mean, min and max per cell type."""
        out = super().scalars()
        for t, c in self.concentrations().items():
            c = c.detach()
            out.update({f"concentration_{t}/mean": c.mean(), f"concentration_{t}/min": c.min(),
                        f"concentration_{t}/max": c.max()})
        return out
