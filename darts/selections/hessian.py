"""The dominant eigenvalue of the Hessian of the validation loss w.r.t. the architecture parameters.

R-DARTS (Zela et al., "Understanding and Robustifying Differentiable Architecture Search", ICLR 2020, sec. 4)
tracks it during the search: a large one marks a sharp arch optimum whose discretised cell generalises poorly, and
its growth drives their early stopping (``darts.selections.darts_es``). The official code (automl/RobustDARTS
src/search/analyze.py ``compute_Hw``) forms the full Hessian of L_val on one arch batch (the epoch's last,
src/search/train_search.py ``train``) in training mode and takes ``max(eigvals(H))``. Here the same eigenvalue comes
from Lanczos iteration on Hessian-vector products (double backprop), which needs no [A, A] matrix (A = 224 alphas
in the DARTS space, one double backward pass each) and is exact after A steps. Plain power iteration was tried
first: it converges to the eigenvalue of largest magnitude, and slowly where the spectrum is crowded (an early
search's indefinite Hessian: 20 steps gave 4.2e-5 for an exact 2.2e-4 in tests/test_hessian.py's supernet); on a
3-cell DARTS supernet 20 Lanczos steps matched the exact 224 x 224 Hessian's top eigenvalue (0.0491) to 4 digits.
Unlike analyze.py, the Hessian is of L_val alone: R-DARTS adds the arch weight decay to the gradient (+1e-3 on every
eigenvalue), and it uses the epoch's last arch batch where the monitor takes the next batches of the arch half.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed
from darts.checkpointing import no_recomputation
from darts.strategies.base import Strategy
from darts.training import Batch

Vector = list[torch.Tensor]  # one tensor per arch parameter, shaped like it
EIGENVALUE = "hessian_eigenvalue"  # its name in a run's logs: arch/hessian_eigenvalue, the genotypes.jsonl key


def _dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _lanczos(operator: Callable[[Vector], Vector], start: Vector, steps: int) -> torch.Tensor:
    """The largest Ritz value of the symmetric ``operator`` after ``steps`` Lanczos steps from the unit vector
    ``start``, each new direction re-orthogonalised against all earlier ones (no host sync in the loop)."""
    basis, diagonal, off = [start], [], []
    for _ in range(steps):
        q = basis[-1]
        w = operator(q)
        diagonal.append(_dot(w, q))
        for b in basis:  # full re-orthogonalisation: T stays Q^T H Q, its eigenvalues inside H's spectrum
            c = _dot(w, b)
            w = [x - c * y for x, y in zip(w, b)]
        norm = _dot(w, w).sqrt()
        off.append(norm)
        # an exhausted Krylov space leaves rounding noise, normalised into a new orthogonal direction
        basis.append([x / norm.clamp_min(torch.finfo(norm.dtype).tiny) for x in w])
    t = torch.diag(torch.stack(diagonal))  # [steps, steps] tridiagonal
    if steps > 1:
        betas = torch.stack(off[:-1])
        t = t + torch.diag(betas, 1) + torch.diag(betas, -1)
    return torch.linalg.eigvalsh(t)[-1]


def dominant_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], iterations: int,
                        seed: int = 0) -> torch.Tensor:
    """The largest eigenvalue of the Hessian of ``loss_fn()`` w.r.t. ``params`` (R-DARTS's ``max(eigvals(H))``).

    Lanczos iteration on Hessian-vector products H v = d(grad . v)/d params (one graph, a double backward pass per
    step): ``iterations`` steps (at most the number of arch parameters A, where it is exact) give the largest Ritz
    value, which approaches the largest eigenvalue from below far faster than power iteration, and is the largest
    (not the largest in magnitude) even when a negative eigenvalue dominates.

    Args:
        loss_fn: builds the scalar loss (called once).
        params: the tensors to differentiate by (arch parameters, e.g. alphas [E, K] per cell type).
        iterations: Hessian-vector products (>= 1; more than A are not taken).
        seed: seeds the random start vector (a CPU generator: the global random state is not touched).
    Returns:
        The eigenvalue as a 0-d tensor on the parameters' device.
    """
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be >= 1")
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)

    def hvp(v: Vector) -> Vector:
        return [h.detach() for h in torch.autograd.grad(grads, params, v, retain_graph=True)]

    generator = torch.Generator().manual_seed(seed)
    start = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    norm = _dot(start, start).sqrt()
    return _lanczos(hvp, [x / norm for x in start], min(iterations, sum(p.numel() for p in params))).detach()


@dataclass(frozen=True)
class HessianMonitor:
    """Measures the dominant arch-Hessian eigenvalue of L_val during a search (R-DARTS sec. 4; see the module).

    Args:
        every: epochs between measurements (R-DARTS ``--report_freq_hessian``), the last epoch always measured
            (train_search.py: ``epoch % report_freq_hessian == 0 or epoch == epochs - 1``); 0 = off.
        batches: arch-half batches whose mean loss is differentiated (R-DARTS: one).
        iterations: Lanczos steps (Hessian-vector products); exact from the number of arch parameters on.
    """

    every: int = 0
    batches: int = 1
    iterations: int = 20

    def __post_init__(self) -> None:
        for name, low in (("every", 0), ("batches", 1), ("iterations", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"hessian.{name}={value!r} is not valid: an integer >= {low}")

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether ``epoch`` (0-based, of ``epochs``) is measured."""
        return self.every > 0 and (epoch % self.every == 0 or epoch == epochs - 1)

    def measure(self, strategy: Strategy, supernet: nn.Module, loader: Iterable[Batch],
                dist: Distributed = SINGLE) -> float:
        """The eigenvalue of ``strategy.loss`` on the next ``batches`` batches of ``loader`` (the arch half), in
        training mode as R-DARTS; the supernet's buffers (BN statistics) and the random state are restored, so the
        search runs as it would unmonitored. A sampling strategy keeps one draw throughout (``one_sample``); with
        several ranks, the mean of the ranks' eigenvalues (each on its shard)."""
        batches = list(islice(loader, self.batches))
        saved = [b.detach().clone() for b in supernet.buffers()]
        device = next(supernet.parameters()).device
        supernet.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), strategy.one_sample(), \
                no_recomputation():  # second derivatives through the plain computation, not through a recomputation
            try:
                value = dominant_eigenvalue(lambda: sum(strategy.loss(b) for b in batches) / len(batches),
                                            strategy.arch_parameters(), self.iterations)
            except RuntimeError as err:  # e.g. DrNAS: torch has no derivative of aten::_dirichlet_grad
                if "not implemented" not in str(err):
                    raise
                raise ValueError(f"hessian.every={self.every}: the arch Hessian needs second derivatives of "
                                 f"{type(strategy).__name__}'s mixing weights, which torch lacks ({err})") from None
        with torch.no_grad():
            for buffer, old in zip(supernet.buffers(), saved):
                buffer.copy_(old)
        return float(dist.sum(value.reshape(1))[0]) / dist.world
