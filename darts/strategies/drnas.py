"""DrNAS: Dirichlet Neural Architecture Search (Chen et al., ICLR 2021).

Each edge's op mixing weights are a random variable theta ~ Dir(beta) whose concentration is a
positive transform of the arch parameters, beta = elu(alpha) + 1 (paper sec. 2). Every forward pass
draws a reparameterised sample (pathwise gradient), and the arch parameters minimise the
expected validation loss plus a regulariser pulling beta towards the anchor 1 (uniform Dirichlet):
  * ``reg_type="l2"`` (the official default): L2 on alpha, i.e. Adam weight decay ``reg_scale``;
  * ``reg_type="kl"``: ``reg_scale * sum_edges KL(Dir(beta) || Dir(1))`` added to the arch loss.
The genotype is derived from the Dirichlet mean beta / sum(beta).
Code: xiangning-chen/DrNAS utils.py ``process_step_vector``, 201-space/search_model.py ``_get_kl_reg``,
architect.py (regulariser as Adam weight decay for l2). Progressive learning (partial channels widened
and ops pruned between stages, DARTS-space/train_search.py) is not implemented.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from darts.strategies.darts import DARTS
from darts.supernet import Mixing, Supernet
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


class DrNAS(DARTS):
    """Dirichlet-sampled mixing weights with pathwise gradients on the concentrations.

    Args:
        reg_type, reg_scale: the regulariser towards the uniform anchor (see module docstring;
            201-space/train_search.py: ``--reg_type l2 --reg_scale 1e-3``).
        drop_none: fix the `none` op's weight at 0 and put the Dirichlet on the other ops, as
            DrNAS's DARTS-space genotypes.py (which removes `none`); its 201-space keeps `none`.
        order, arch_lr, arch_betas, fd_radius, arch_start_epoch: as ``DARTS`` (201-space
            train_search.py: first order, Adam lr 3e-4, betas (0.5, 0.999), arch steps from epoch 0).
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, reg_type: str = "l2", reg_scale: float = 1e-3,
                 drop_none: bool = False, order: int = 1, arch_lr: float = 3e-4,
                 arch_betas: tuple[float, float] = (0.5, 0.999), fd_radius: float = 0.01, arch_start_epoch: int = 0):
        if reg_type not in REG_TYPES:
            raise ValueError(f"strategy.reg_type={reg_type!r} is not valid; choose one of {REG_TYPES}")
        if drop_none and "none" not in space.primitives:
            raise ValueError(f"strategy.drop_none=True but the space has no 'none' primitive: {space.primitives}")
        # architect.py: l2 is Adam's weight decay on alpha; kl adds its term to the loss, no weight decay
        super().__init__(supernet, space, order, arch_lr, arch_betas, reg_scale if reg_type == "l2" else 0.0,
                         fd_radius, arch_start_epoch)
        self.reg_type, self.reg_scale = reg_type, reg_scale
        self._draws: dict[str, torch.Tensor] | None = None  # a fixed draw per cell type inside one_sample()
        keep = [k for k, name in enumerate(space.primitives) if not (drop_none and name == "none")]
        self.keep = torch.tensor(keep, device=next(supernet.parameters()).device)  # [K']

    def concentrations(self) -> dict[str, torch.Tensor]:
        """beta = elu(alpha) + 1 > 0 over the kept ops: [E, K'] per cell type."""
        return {t: F.elu(self.supernet.alphas[t].index_select(1, self.keep)) + 1 for t in self.supernet.cell_types}

    def _full(self, w: torch.Tensor) -> torch.Tensor:
        """[E, K'] weights of the kept ops -> [E, K] with dropped ops at 0 (differentiable)."""
        shape = (w.shape[0], len(self.space.primitives))
        return w.new_zeros(shape).index_copy(1, self.keep, w)

    def mixing(self) -> dict[str, Mixing]:
        """A reparameterised Dirichlet sample [E, K] per cell type (rows on the simplex); inside ``one_sample`` the
        same draw each time, with the same pathwise gradient."""
        # validate_args=False: the concentrations are positive by construction, and validation syncs with the host
        draw = (lambda t, c: Dirichlet(c, validate_args=False).rsample()) if self._draws is None else \
            (lambda t, c: FixedDirichlet.apply(c, self._draws[t]))
        return {t: Mixing(self._full(draw(t, c))) for t, c in self.concentrations().items()}

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
        return {t: self._full(c / c.sum(-1, keepdim=True)).detach() for t, c in self.concentrations().items()}

    def arch_penalty(self) -> torch.Tensor | None:
        """reg_scale * sum over edges of KL(Dir(beta) || Dir(1)) for reg_type 'kl' (201-space/search_model.py
        ``_get_kl_reg``); None for 'l2', which is Adam's weight decay."""
        if self.reg_type != "kl":
            return None
        return self.reg_scale * sum(kl_divergence(Dirichlet(c, validate_args=False),
                                                  Dirichlet(torch.ones_like(c), validate_args=False)).sum()
                                    for c in self.concentrations().values())

    def scalars(self) -> dict[str, Any]:
        """Entropy of the Dirichlet mean and the concentrations' mean, min and max per cell type."""
        out = super().scalars()
        for t, c in self.concentrations().items():
            c = c.detach()
            out.update({f"concentration_{t}/mean": c.mean(), f"concentration_{t}/min": c.min(),
                        f"concentration_{t}/max": c.max()})
        return out
