"""GDAS: Searching for a Robust Neural Architecture in Four GPU Hours (Dong and Yang, CVPR 2019).

Each edge samples one op with the Gumbel-max trick on its arch parameters (paper sec. 3):
    h = one_hot(argmax_k (log softmax(alpha)_k + g_k)),  g_k = -log(-log(u_k)),  u_k ~ U(0, 1),
and the forward pass runs only that op. The backward pass takes the straight-through gradient of the
Gumbel-softmax relaxation softmax((log softmax(alpha) + g) / tau), with tau annealed linearly from
tau_max to tau_min over the epochs. The arch step is the first-order DARTS step on the validation loss.
Code: D-X-Y/AutoDL-Projects lib/models/cell_searchs/search_model_gdas.py (``forward``),
exps/NAS-Bench-201-algos/GDAS.py (tau schedule), scripts-search/algos/GDAS.sh (settings).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from darts.divergence import Diverged
from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing, Supernet
from search_spaces.base import SearchSpace

MAX_DRAWS = 100  # a finite alpha gives a finite sample with probability ~1 - 1e-7 per draw; more draws mean NaN alphas


def gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise shaped like ``like`` [E, K]: g = -log(-log u) = -log(e), e ~ Exp(1)."""
    return -torch.empty_like(like).exponential_().log()


def gumbel_softmax(alphas: torch.Tensor, tau: float, gumbels: torch.Tensor) -> torch.Tensor:
    """The Gumbel-softmax relaxation softmax((log softmax(alphas) + g) / tau) of alphas [E, K] -> [E, K]."""
    return F.softmax((alphas.log_softmax(dim=-1) + gumbels) / tau, dim=-1)


def one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Rows of zeros shaped like ``like`` [E, K] with a 1 at ``index`` [E]."""
    return torch.zeros_like(like).scatter_(-1, index[:, None], 1.0)


def selected_only(hard: torch.Tensor, chosen: torch.Tensor, unselected_grad: bool) -> torch.Tensor:
    """``hard`` [E, K], its non-sampled entries (``chosen`` [E, K] one-hot) detached unless ``unselected_grad``."""
    return hard if unselected_grad else torch.where(chosen.bool(), hard, hard.detach())


def gumbel_hard(alphas: torch.Tensor, tau: float,
                unselected_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straight-through Gumbel-softmax sample of alphas [E, K] (search_model_gdas.py ``forward``).

    Returns hard weights [E, K] (one-hot in value, softmax gradient), the sampled op per edge [E] and a
    scalar flag that is True when the sample has an inf or nan (the reference then draws again).
    With ``unselected_grad=False`` only the sampled op's weight keeps a gradient path.
    """
    gumbels = gumbel_noise(alphas)  # [E, K]
    probs = gumbel_softmax(alphas, tau, gumbels)  # [E, K]
    index = probs.argmax(dim=-1)  # [E]
    chosen = one_hot(index, probs)  # [E, K]
    hard = selected_only(chosen - probs.detach() + probs, chosen, unselected_grad)  # [E, K]
    bad = torch.isinf(gumbels).any() | torch.isinf(probs).any() | torch.isnan(probs).any()
    return hard, index, bad


class Tempered(DARTS):
    """A DARTS-family strategy whose mixing weights are samples at a temperature ``tau`` (GDAS, SNAS, ReinMax): the
    genotype comes from softmax(alphas), and tau is logged, checkpointed and restored beside DARTS's state."""

    tau: float

    def op_weights(self) -> dict[str, torch.Tensor]:
        """softmax(alphas), detached: the genotype is the argmax of the arch parameters (search_model_gdas.py;
        SNAS model_search.py ``genotype``)."""
        return {t: F.softmax(self.supernet.alphas[t], dim=-1).detach() for t in self.supernet.cell_types}

    def scalars(self) -> dict[str, Any]:
        """The temperature, next to DARTS's op-distribution entropies."""
        return {"tau": self.tau, **super().scalars()}

    def state_dict(self) -> dict[str, Any]:
        """DARTS's state and the temperature."""
        return {**super().state_dict(), "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore DARTS's state and the temperature."""
        super().load_state_dict(state)
        self.tau = state["tau"]


class GDAS(Tempered):
    """GDAS: one Gumbel-sampled op per edge, straight-through gradients, tau annealed per epoch.

    Args:
        tau_max, tau_min: the temperature goes linearly from tau_max (first epoch) to tau_min (last
            epoch), as exps/NAS-Bench-201-algos/GDAS.py ``set_tau`` (GDAS.sh: 10 and 0.1).
        unselected_grad: True adds the non-sampled ops' zero weights to each edge's sum, so they get a
            gradient as in NB201's search_cells.py ``forward_gdas``; False keeps only the sampled op's
            weight, as the DARTS-space cell (search_cells.py NASNetSearchCell / MixedOp ``forward_gdas``).
        order: 1 only (GDAS.py's first-order step; 2 is refused: a sampled architecture per forward pass makes
            the unrolled finite difference subtract gradients of different architectures).
        arch_lr, arch_betas, arch_weight_decay, arch_start_epoch: as ``DARTS`` (GDAS.py: Adam lr 3e-4,
            betas (0.5, 0.999), weight decay 1e-3).
        early_stop: OLES's keys (``oles``, ``oles_threshold``, ``oles_frequency``), as ``DARTS``.
    """

    samples_paths = True  # edge e computes op index[e] only

    def __init__(self, supernet: Supernet, space: SearchSpace, tau_max: float = 10.0, tau_min: float = 0.1,
                 unselected_grad: bool = True, order: int = 1, arch_lr: float = 3e-4,
                 arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
                 arch_start_epoch: int = 0, **early_stop: Any):
        name = type(self).__name__  # GDAS, or a subclass with another estimator (ReinMax)
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"{name} needs 0 < tau_min <= tau_max, got tau_min={tau_min!r}, tau_max={tau_max!r}")
        if order != 1:
            raise ValueError(f"strategy.order={order} is not defined for {name}: GDAS's paper (sec. 3) and GDAS.py "
                             "take a first-order arch step only; use strategy.order=1")
        if supernet.context.compile:
            raise ValueError(f"compile=true is not supported with strategy={name.lower()}: the op sampled on each edge "
                             "chooses which modules run, so torch.compile would recompile at every step; use "
                             "compile=false")
        super().__init__(supernet, space, order, arch_lr, arch_betas, arch_weight_decay,
                         arch_start_epoch=arch_start_epoch, **early_stop)
        self.tau_max, self.tau_min = float(tau_max), float(tau_min)
        self.unselected_grad = unselected_grad
        self.tau = self.tau_max  # search_model_gdas.py: self.tau = 10 until set_tau

    def epoch_start(self, epoch: int, epochs: int) -> None:
        """tau = tau_max - (tau_max - tau_min) * epoch / (epochs - 1) (GDAS.py)."""
        super().epoch_start(epoch, epochs)
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * epoch / max(epochs - 1, 1)

    def mixing(self) -> dict[str, Mixing]:
        """A hard sample per edge: weights [E, K] (straight-through) and the op index [E] per cell type."""
        for _ in range(MAX_DRAWS):  # the reference resamples until the Gumbel noise and probabilities are finite
            samples = [self.sample(self.supernet.alphas[t]) for t in self.supernet.cell_types]
            # one host sync per sample: the indices steer which op modules run
            flat = torch.cat([index for _, index, _ in samples] + [torch.stack([bad for *_, bad in samples]).long()])
            values = flat.tolist()
            if not any(values[-len(samples):]):
                break
        else:
            raise Diverged(f"no finite Gumbel sample in {MAX_DRAWS} draws: non-finite alphas")
        E = self.supernet.num_edges
        mixing = {}
        for i, (t, (hard, _, _)) in enumerate(zip(self.supernet.cell_types, samples)):
            mixing[t] = Mixing(hard, values[i * E:(i + 1) * E])
        return mixing

    def sample(self, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One hard sample of alphas [E, K] at the current tau: weights [E, K], the op per edge [E] and whether the
        draw is non-finite (``gumbel_hard``)."""
        return gumbel_hard(alphas, self.tau, self.unselected_grad)
