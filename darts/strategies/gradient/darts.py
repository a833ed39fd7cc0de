"""DARTS: Differentiable Architecture Search (Liu, Simonyan and Yang, ICLR 2019).

Mixing weights are the softmax of the alphas over each edge's ops (eq. 2). Alphas follow the
gradient of the validation loss (eq. 3-4):
  * first order: grad_alpha L_val(w, alpha) (xi = 0);
  * second order: the unrolled objective L_val(w', alpha) with w' = w - xi grad_w L_train(w, alpha),
    whose gradient (eq. 7) is grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) .
    grad_w' L_val(w', alpha), the Hessian-vector product taken by central finite differences (eq. 8)
    at w +- eps * grad_w' L_val with eps = 0.01 / ||grad_w' L_val||. As in cnn/architect.py, w' is
    one step of the weight optimizer, momentum and weight decay included, with xi = its current lr.
Any DARTS-family strategy may add OLES's operation-level early stopping (``oles=True``, ``darts.strategies.gradient.
oles``): the first-order arch step then also takes the op weights' validation gradients, in the same backward pass.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from darts.hypergradients.base import direction
from darts.strategies.base import Strategy
from darts.strategies.gradient.oles import OLES
from darts.training import Batch
from darts.checkpointing import plain_cells
from darts.supernet import Mixing, Supernet
from search_spaces.base import SearchSpace

ORDERS = (1, 2)


class DARTS(Strategy):
    """DARTS with an Adam optimizer on the alphas (cnn/architect.py; defaults of cnn/train_search.py).

    Args:
        order: 1 (first-order approximation) or 2 (unrolled, finite-difference Hessian).
        arch_lr, arch_betas, arch_weight_decay: Adam on the alphas (paper sec. 3.1.1: 3e-4, (0.5, 0.999), 1e-3).
        fd_radius: the finite-difference scale r, eps = r / ||grad_w' L_val|| (paper sec. 2.3: 0.01).
        oles, oles_threshold, oles_frequency: OLES's operation-level early stopping on, its threshold and window
            (PasaLab/oles train_search.py: 0.4, 20; ``darts.strategies.gradient.oles``).
    """

    def __init__(self, supernet: Supernet, space: SearchSpace, order: int = 1, arch_lr: float = 3e-4,
                 arch_betas: tuple[float, float] = (0.5, 0.999), arch_weight_decay: float = 1e-3,
                 fd_radius: float = 0.01, arch_start_epoch: int = 0, oles: bool = False, oles_threshold: float = 0.4,
                 oles_frequency: int = 20):
        super().__init__(supernet, space, arch_start_epoch)
        if order not in ORDERS:
            raise ValueError(f"strategy.order={order!r} is not valid; choose one of {ORDERS}")
        self.order = order
        self.fd_radius = fd_radius
        self.arch_optimizer = torch.optim.Adam(self.arch_parameters(), lr=arch_lr, betas=tuple(arch_betas),
                                               weight_decay=arch_weight_decay)
        self.oles = OLES(supernet, oles_threshold, oles_frequency, self.dist) if oles else None
        if oles:
            self.samples_paths = True  # frozen ops' weights get no gradient

    def mixing(self) -> dict[str, Mixing]:
        """softmax(alphas) per edge: [E, K] per cell type."""
        return {t: Mixing(F.softmax(self.supernet.alphas[t], dim=-1)) for t in self.supernet.cell_types}

    def op_weights(self) -> dict[str, torch.Tensor]:
        """softmax(alphas), detached."""
        return {t: m.weights.detach() for t, m in self.mixing().items()}

    def arch_step(self, train: Batch, valid: Batch, weight_optimizer: torch.optim.Optimizer) -> None:
        """One Adam step on the alphas along the first- or second-order hypergradient."""
        params = self.arch_parameters()
        if self.order == 1:  # gradients of the arch parameters (and of the ops OLES watches) only
            grads = self.gradients(self.arch_loss(valid), params)
        else:
            grads = self.unrolled_gradient(train, valid, weight_optimizer)
            self.match_gradients(valid)
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.detach()
        self.dist.mean_grads(params)  # every rank takes the same step: the arch parameters stay identical
        self.arch_optimizer.step()

    def gradients(self, loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """d loss / d params; with OLES, the same backward pass also takes the watched op weights' gradients, which
        OLES scores as their validation gradients (PasaLab/oles: the arch step's ``loss.backward()``)."""
        watched = self.oles.watch() if self.oles is not None else []
        if not params and not watched:
            return []
        grads = torch.autograd.grad(loss, [*params, *watched], allow_unused=True)
        if self.oles is not None:
            self.oles.update(grads[len(params):])
        return list(grads[:len(params)])

    def match_gradients(self, valid: Batch) -> None:
        """OLES's validation gradients from a pass of their own (an arch step whose backward is not the validation
        loss at the current weights: second order, single level); nothing without OLES."""
        if self.oles is not None:
            self.gradients(self.loss(valid), [])

    def unrolled_gradient(self, train: Batch, valid: Batch, weight_optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """Eq. 7 with the finite-difference Hessian-vector product of eq. 8 (no model copies), always in fp32:
        under bf16 autocast the finite differences measured 53-65% off the float64 hypergradient.
        ``arch_penalty()`` depends on the arch parameters alone, so its gradient adds to the hypergradient."""
        # IEEE fp32 (TF32, cuDNN's default on Ampere+, measured 11-34% off in float64 tests); one architecture
        # sample for the whole finite difference (a sampling strategy's draws would not cancel otherwise)
        with self.context.exact(), self.one_sample(), plain_cells():  # the unrolled passes swap weights in
            grads, loss = self._unrolled_gradient(train, valid, weight_optimizer)
            mixing = self.mixing()
        penalty = self.arch_penalty()
        if penalty is not None:
            extra = torch.autograd.grad(penalty, self.arch_parameters(), allow_unused=True)
            grads = [g if e is None else g + e for g, e in zip(grads, extra)]
            loss = loss + penalty.detach()
        return grads if self.budget is None else self.budgeted(grads, loss, mixing)

    def budgeted(self, grads: list[torch.Tensor], loss: torch.Tensor, mixing: dict[str, Mixing]) -> list[torch.Tensor]:
        """The hypergradient of the budget's objective B(L, c(alpha)) from that of L (``grads``, at value ``loss``):
        dB/dL * grads + dB/dc * dc/dalpha, the chain rule through the penalty."""
        value = loss.detach().requires_grad_(True)
        objective = self.budget.penalise(value, mixing)
        d_loss, *d_cost = torch.autograd.grad(objective, [value, *self.arch_parameters()], allow_unused=True)
        return [d_loss * g + (0 if c is None else c) for g, c in zip(grads, d_cost)]

    def _unrolled_gradient(self, train: Batch, valid: Batch, weight_optimizer: torch.optim.Optimizer,
                           ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Eq. 7's hypergradient and L_val(w', alpha)."""
        # the weights that train (OLES's frozen ops stay as they are in the virtual step)
        names, w = zip(*[(n, p) for n, p in self.supernet.named_parameters()
                         if not n.startswith("alphas.") and p.requires_grad])
        w_unrolled = self._virtual_step(names, w, train, weight_optimizer)
        alphas = self.arch_parameters()
        loss = self._functional_loss(dict(zip(names, w_unrolled)), valid)
        grads = torch.autograd.grad(loss, [*alphas, *w_unrolled], allow_unused=True)
        d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads[:len(alphas)])]
        v = [torch.zeros_like(p) if g is None else g for p, g in zip(w, grads[len(alphas):])]
        eps = self.fd_radius / torch.cat([g.flatten() for g in v]).norm()
        with torch.no_grad():
            w_plus = [p + eps * g for p, g in zip(w, v)]
            w_minus = [p - eps * g for p, g in zip(w, v)]
        g_plus = self._arch_grad(dict(zip(names, w_plus)), train)
        g_minus = self._arch_grad(dict(zip(names, w_minus)), train)
        xi = weight_optimizer.param_groups[0]["lr"]
        return [d - xi * (gp - gm) / (2 * eps) for d, gp, gm in zip(d_alpha, g_plus, g_minus)], loss.detach()

    def _virtual_step(self, names: tuple[str, ...], w: tuple[torch.Tensor, ...], train: Batch,
                      weight_optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """w' = w - xi * (momentum * buffer + grad_w L_train + wd * w), as leaves (cnn/architect.py)."""
        group = weight_optimizer.param_groups[0]
        xi, momentum, wd = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        grads = torch.autograd.grad(self.loss(train), w, allow_unused=True)
        buffers = [weight_optimizer.state.get(p, {}).get("momentum_buffer") for p in w]
        with torch.no_grad():  # the step direction the training hyperparameters' hypergradients use too
            steps = direction(w, grads, wd, momentum, False, buffers)
            return [(p - xi * step).requires_grad_(True) for p, step in zip(w, steps)]

    def _functional_loss(self, weights: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """Cross-entropy of the supernet with its weights replaced (alphas and buffers are its own)."""
        x, y = batch
        return F.cross_entropy(functional_call(self.supernet, weights, (x, self.mixing()), strict=False), y)

    def _arch_grad(self, weights: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """grad_alpha L(weights, alpha) on a batch."""
        alphas = self.arch_parameters()
        grads = torch.autograd.grad(self._functional_loss(weights, batch), alphas, allow_unused=True)
        return [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads)]

    def scalars(self) -> dict[str, Any]:
        """Entropy of the op distribution per cell type (mean over edges); OLES's frozen ops and GM score."""
        out = {} if self.oles is None else self.oles.scalars()
        for t, w in self.op_weights().items():
            out[f"entropy_{t}"] = -(w * w.clamp_min(1e-12).log()).sum(-1).mean()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Epoch, the arch optimizer's state and OLES's."""
        oles = {} if self.oles is None else {"oles": self.oles.state_dict()}
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(), **oles}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore epoch, arch optimizer and OLES."""
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        if self.oles is not None:
            self.oles.load_state_dict(state["oles"])
