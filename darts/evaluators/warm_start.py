"""Warm starts: the genotypes a discrete strategy's initial design draws before any uniform sample.

``zero_cost_warm_start`` is the zero-cost warmup of Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS",
ICLR 2021, sec. 5 (mohsaied/zero-cost-nas notebooks/nas_examples.ipynb ``zero_cost_warmup``): sample a pool of
genotypes uniformly, score each with a zero-cost proxy, and hand the best to the search, best first. The run
(``darts.runs.discrete``) calls it with its space and data and sets ``strategy.warm``; a warm start is a pure
function of its arguments, so a resumed run replays the same genotypes.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from darts.evaluators.zero_cost import ZeroCostEvaluator
from darts.data.search_split import SearchData
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
WARM_STREAM = 1  # SeedSequence spawn key: the warm start's draws are independent of the run's own (seeded by seed)


def warm_seed(seed: int) -> int:
    """The seed of the warm start's pool, batch and networks, derived from the run seed."""
    state = np.random.SeedSequence(seed, spawn_key=(WARM_STREAM,)).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def zero_cost_warm_start(space: SearchSpace, data: SearchData, proxy: str = "synflow", pool: int = 3000,
                         keep: int = 100, seed: int = 0, batch_size: int = 64) -> list[Any]:
    """The ``keep`` best distinct genotypes of ``pool`` uniform samples by ``proxy``, best first.

    Args:
        space, data: the run's space and search split (the proxy's batch comes from its weight half).
        proxy: a zero-cost proxy (``darts.evaluators.proxies.PROXIES``).
        pool: genotypes sampled and scored.
        keep: genotypes returned (fewer when the pool holds fewer distinct ones).
        seed: the run seed (``warm_seed`` derives the pool's own).
        batch_size: images in the proxy's batch.

    Ties keep sampling order; a genotype sampled twice is kept once (its first score), so no evaluation of the
    search is spent on a repeat.
    """
    if pool < 1 or keep < 1:
        raise ValueError(f"warm_start.pool={pool} and warm_start.keep={keep} must both be >= 1")
    own = warm_seed(seed)
    evaluator = ZeroCostEvaluator(space, data, proxy, batch_size, seed=own)
    evaluator.prepare()
    generator = torch.Generator().manual_seed(own)
    best: dict[str, tuple[float, int, Any]] = {}  # text -> (score, sample index, genotype) of its first sample
    for index in range(pool):
        genotype = space.sample(generator)
        text = space.to_text(genotype)
        if text not in best:
            best[text] = (evaluator.evaluate(genotype, index).score, index, genotype)
    ranked = sorted(best.values(), key=lambda item: (-item[0], item[1]))[:keep]
    log.info("zero-cost warm start: the best %d of %d sampled genotypes (%d distinct) by %s, scores %.4g to %.4g",
             len(ranked), pool, len(best), proxy, ranked[0][0], ranked[-1][0])
    return [genotype for _, _, genotype in ranked]
