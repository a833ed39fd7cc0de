"""Score a genotype by a zero-cost proxy of its untrained network on one batch (``darts.evaluators.proxies``).

The 13 proxies of NASLib (Krishnakumar et al., "NAS-Bench-Suite-Zero", NeurIPS 2022): Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021 (synflow, grad_norm, snip, grasp, fisher, jacov; plain and l2_norm from its
official code mohsaied/zero-cost-nas), Mellor et al., ICML 2021 (naswot), Lopes et al., ICANN 2021 (epe_nas), Lin et al., ICCV 2021
(zen), and the network's FLOPs and parameters.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from darts.evaluators.base import EpochCallback, Evaluation, Evaluator, build_seeded, candidate_seed
from darts.evaluators.proxies import as_score, get_proxy
from darts.context import Context
from darts.data.search_split import SearchData
from darts.settings import integer
from search_spaces.base import SearchSpace


class ZeroCostEvaluator(Evaluator):
    """The proxy of the genotype's network (``space.build_network``, at the space's size), untrained.

    Every candidate is scored on the same batch: the first ``batch_size`` images of the weight half of the search
    split (shuffled and augmented like training data, seeded by ``seed``), drawn once in ``prepare``, as Mellor
    et al. score every network on one batch (score_networks.py reseeds before drawing it); its initial weights
    are seeded by ``candidate_seed(seed, index)``. The score is the proxy's value (higher is better; an undefined
    value ranks last, ``darts.evaluators.proxies.as_score``); the cost is the wall time of building and scoring the network.

    Args:
        space, data: the run's space and search split.
        proxy: one of ``darts.evaluators.proxies.PROXIES`` (synflow, grad_norm, snip, jacov, naswot, fisher, grasp,
            plain, epe_nas, zen, l2_norm, flops, params).
        batch_size: images in the batch.
        seed: the run seed.
        workers: candidates scored at once (threads).
        context: the run's execution context.
    """

    takes_fidelity = False

    def __init__(self, space: SearchSpace, data: SearchData, proxy: str = "synflow", batch_size: int = 64,
                 seed: int = 0, workers: int = 1, context: Context = Context()):
        super().__init__(space, workers, context)
        integer("evaluator.batch_size", batch_size, 1)
        self.proxy_name, self.proxy = proxy, get_proxy(proxy)
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (x (B, 3, H, W), y (B,)), set by prepare

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Load the dataset and draw the batch (in the main thread, before any worker starts)."""
        if self.batch is None:  # the loader refuses a batch_size larger than the weight half
            self.batch = next(iter(self.data.weight_loader(self.batch_size, self.seed)))

    def evaluate(self, genotype: Any, index: int, fidelity: Any = None) -> Evaluation:
        """The proxy of the untrained network on the batch; a zero-cost proxy has no fidelity (None only)."""
        if fidelity is not None:
            raise ValueError(f"evaluator=zero_cost takes no fidelity, got {fidelity!r} (a multi-fidelity strategy "
                             "needs evaluator=train or tabular)")
        if self.batch is None:
            raise RuntimeError("call prepare() before evaluate(): it draws the batch")
        start = time.perf_counter()
        x, y = self.batch
        net = build_seeded(lambda: self.space.build_network(genotype, self.data.num_classes),
                           candidate_seed(self.seed, index)).to(x.device)
        value = self.proxy(net, x, y)
        return Evaluation(as_score(value), time.perf_counter() - start, {self.proxy_name: value})
