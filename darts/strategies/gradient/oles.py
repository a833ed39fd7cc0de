"""OLES: Operation-Level Early Stopping for Robustifying Differentiable NAS (Jiang et al., NeurIPS 2023).

Skip connections come to dominate DARTS because the parametric ops overfit the training data while the alphas follow
the validation data. OLES stops training each candidate op on its own once its gradients on the two halves stop
matching. At every arch step, op o's gradient-matching (GM) score compares g_tr, the gradient of the last weight step
(after gradient clipping), with the op's gradient after the arch step's validation loss has been back-propagated on
top of it, as the official code reads it (its first-order arch step accumulates into the weights' ``.grad``):

    GM_o = mean over o's parameters p of  mean over the other axes of  cos_dim0(g_tr,p + g_val,p, g_tr,p),

the cosine taken along each parameter's first axis (``torch.cosine_similarity(..., dim=0)``). The scores are summed
per op; at the scored step where the op's counter has reached ``frequency`` (every ``frequency + 1`` scored steps),
the sum divided by ``frequency`` is compared with ``threshold``: below it, the op's weights are frozen for the rest of
the search (no more updates); either way sum and counter restart. An op is scored at a step where its parameters have
both gradients (a sampling strategy leaves the ops it did not sample without). The host looks for closed windows every
``frequency + 1`` scored steps (no per-step sync): when they close with every op scored at every step (DARTS), later
by up to as many steps with a sampling strategy.
Code: PasaLab/oles train_search.py (``preserve_grads``, ``check_grads_cosine``: ``m.count == 20``, ``< 0.4``,
``freeze``: ``requires_grad_(False)``).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Sequence

import torch
import torch.nn as nn

from darts.distributed import Distributed
from darts.settings import integer, number
from darts.supernet import Structure, Supernet

log = logging.getLogger(__name__)


def gm_scores(train: Sequence[torch.Tensor], valid: Sequence[torch.Tensor]) -> torch.Tensor:
    """cos_dim0(g_tr + g_val, g_tr) averaged over the other axes, for parameters of one shape: train and valid
    gradients stacked to [N, *shape] -> [N]."""
    g_tr = torch.stack(list(train))  # [N, *shape]
    cos = torch.cosine_similarity(g_tr + torch.stack(list(valid)), g_tr, dim=1)  # [N, *shape[1:]]
    return cos.reshape(len(cos), -1).mean(dim=1)  # [N]


class OLES:
    """Operation-level early stopping over a supernet's candidate ops (``Supernet.candidate_ops``) with parameters.

    Args:
        supernet: the supernet whose candidate ops are watched.
        threshold: an op whose GM score, over a window, is below it is frozen (train_search.py: 0.4).
        frequency: scored steps per window, as the official counter counts them (train_search.py: 20).
        dist: the run's ranks: the scores are averaged over them, so that every rank freezes the same ops.
    """

    def __init__(self, supernet: Supernet, threshold: float = 0.4, frequency: int = 20,
                 dist: Distributed = Distributed()):
        number("strategy.oles_threshold", threshold, -1.0, None)
        integer("strategy.oles_frequency", frequency, 1)
        self.supernet, self.threshold, self.frequency, self.dist = supernet, float(threshold), frequency, dist
        self._structure: Structure | None = None
        self.names = list(self._ops())
        device = next(supernet.parameters()).device
        self.totals = torch.zeros(len(self.names), device=device)  # [O] the scores of each op's current window
        self.counts = torch.zeros(len(self.names), dtype=torch.long, device=device)  # [O] the official m.count
        self.last = torch.full((len(self.names),), float("nan"), device=device)  # [O] the last window's mean
        self.pending = torch.zeros(len(self.names), dtype=torch.bool, device=device)  # [O] to freeze at the next look
        self.frozen: set[str] = set()
        self._unchecked = 0  # scored steps since the host last looked for a finished window
        self._watching: list[tuple[int, list[nn.Parameter]]] = []

    def _ops(self) -> dict[str, list[nn.Parameter]]:
        """The candidate ops that have parameters, by name (read again after the supernet changes shape)."""
        if self._structure is not self.supernet.structure:
            self._cached = {name: list(op.parameters()) for name, op in self.supernet.candidate_ops().items()
                            if any(True for _ in op.parameters())}
            self._structure = self.supernet.structure
        return self._cached

    def watch(self) -> list[nn.Parameter]:
        """The parameters whose validation gradients the next ``update`` takes: those of every op still training."""
        ops = self._ops()
        self._watching = [(i, ops[name]) for i, name in enumerate(self.names) if name not in self.frozen]
        self.refreeze()
        return [p for _, params in self._watching for p in params]

    def update(self, valid: Sequence[torch.Tensor | None]) -> None:
        """Score the watched ops with their validation gradients ``valid`` (in ``watch`` order) against their
        parameters' ``.grad`` (the last weight step's), and freeze the ops whose window ends below the threshold."""
        by_shape: dict[torch.Size, list[tuple[int, torch.Tensor, torch.Tensor]]] = defaultdict(list)
        scored = [0] * len(self.names)  # parameters scored per op
        grads = iter(valid)
        for i, params in self._watching:
            for p, g in zip(params, grads):
                if p.grad is not None and g is not None:
                    by_shape[p.shape].append((i, p.grad, g))
                    scored[i] += 1
        if not by_shape:
            return
        device = self.totals.device
        score = torch.zeros(len(self.names), device=device)  # [O]
        for items in by_shape.values():
            ops = torch.tensor([i for i, _, _ in items], device=device)
            score.index_add_(0, ops, gm_scores([t for _, t, _ in items], [v for _, _, v in items]).float())
        present = torch.tensor(scored, device=device, dtype=torch.float32)  # [O]
        score = score / present.clamp_min(1)
        if self.dist.world > 1:  # the mean over the ranks that scored the op
            summed = self.dist.sum(torch.stack([score * (present > 0), (present > 0).float()]))  # [2, O]
            score, present = summed[0] / summed[1].clamp_min(1), summed[1]
        self._count(score, present > 0)

    def _count(self, score: torch.Tensor, present: torch.Tensor) -> None:
        """The official counter on the device: add the step's scores [O] where ``present`` [O]; where the counter has
        reached ``frequency``, close the window (freeze below the threshold), else count on."""
        self.totals += torch.where(present, score, torch.zeros_like(score))
        due = present & (self.counts == self.frequency)  # [O]
        self.pending |= due & (self.totals / self.frequency < self.threshold)  # train_search.py: m.avg / m.count < 0.4
        self.last = torch.where(due, self.totals / self.frequency, self.last)
        self.totals = torch.where(due, torch.zeros_like(self.totals), self.totals)
        self.counts = torch.where(due, torch.zeros_like(self.counts), self.counts + present.long())
        self._unchecked += 1
        if self._unchecked > self.frequency:  # a window may have closed: one host sync
            self._unchecked = 0
            names = [self.names[i] for i in self.pending.nonzero().flatten().tolist()]
            self.pending.zero_()
            if names:
                self.frozen.update(names)
                self.refreeze()
                log.info("OLES froze %d ops (%d of %d frozen): %s", len(names), len(self.frozen), len(self.names),
                         ", ".join(names))

    def refreeze(self) -> None:
        """No more gradient (so no more update) for the frozen ops' parameters (train_search.py ``freeze``); again
        after the supernet was rebuilt or restored."""
        ops = self._ops()
        for name in self.frozen:
            for p in ops[name]:
                p.requires_grad_(False)
                p.grad = None

    def scalars(self) -> dict[str, Any]:
        """How many ops are frozen and the mean GM score of the ops' last finished windows."""
        finished = self.last[~torch.isnan(self.last)]
        return {"oles/frozen_ops": len(self.frozen),
                "oles/gm_score": finished.mean() if len(finished) else float("nan")}

    def state_dict(self) -> dict[str, Any]:
        """Windows, counters and the frozen ops."""
        return {"names": self.names, "totals": self.totals, "counts": self.counts, "last": self.last,
                "pending": self.pending, "frozen": sorted(self.frozen), "unchecked": self._unchecked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved, and freeze its frozen ops again."""
        if state["names"] != self.names:
            raise ValueError("the checkpoint's OLES state is for another supernet (its candidate ops differ)")
        device = self.totals.device
        self.totals, self.counts, self.last, self.pending = (state[k].to(device)
                                                             for k in ("totals", "counts", "last", "pending"))
        self.frozen, self._unchecked = set(state["frozen"]), state["unchecked"]
        self.refreeze()
