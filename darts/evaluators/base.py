"""The evaluator interface: how a discrete strategy's candidates are scored, at a fidelity, with a cost.

Every evaluator is built with the run's ``space`` and ``data`` (a ``darts.data.search_split.SearchData``,
which loads its dataset only when first asked), so a tabular run never loads images. ``evaluate_all``
scores a list of candidates in order, with a thread pool of ``workers`` threads when ``workers > 1``:
each evaluation depends only on the genotype and its index in the history (its seed), so any number
of workers gives the same scores.

Fidelity and cost: ``evaluate(genotype, index, fidelity)`` takes an optional fidelity, the evaluator's
own notion of how much to spend (training epochs for ``TrainEvaluator``, a table column for
``TabularEvaluator``; None = the configured default), and reports the cost in seconds of what it
stands for (wall time of training, or the table's recorded training time), so that a budget can
count evaluations or time.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from darts.context import Context
from darts.data.search_split import SearchData
from darts.settings import integer
from search_spaces.base import SearchSpace

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Evaluation:
    """A candidate's score (higher is better, accuracy in %), its cost in seconds, and extra metrics."""

    score: float
    cost: float
    metrics: dict[str, float] = field(default_factory=dict)


def candidate_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for the candidate at ``index`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class Evaluator(ABC):
    """Scores genotypes of ``space``; ``workers`` > 1 scores the candidates of a generation concurrently; ``context``
    is the run's execution context (device, precision, progress)."""

    takes_fidelity = True  # whether ``evaluate`` scores at a given fidelity (multi-fidelity strategies need one)

    def __init__(self, space: SearchSpace, workers: int = 1, context: Context = Context()):
        integer("evaluator.workers", workers, 1)
        self.space, self.workers, self.context = space, workers, context

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Work done once before the first evaluation (load data, train a supernet)."""

    @abstractmethod
    def evaluate(self, genotype: Any, index: int, fidelity: Any = None) -> Evaluation:
        """Score ``genotype``, the run's ``index``-th candidate (the index seeds any randomness), at ``fidelity``
        (None: the evaluator's default)."""

    def evaluate_all(self, candidates: list[tuple[int, Any]], fidelity: Any = None) -> Iterator[tuple[Evaluation, float]]:
        """``(evaluation, wall seconds)`` of each ``(index, genotype)`` at ``fidelity``, in order, as they become available."""
        timed = partial(self._timed, fidelity=fidelity)
        if self.workers == 1:
            yield from map(timed, candidates)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="evaluator")
        try:
            yield from pool.map(timed, candidates)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _timed(self, candidate: tuple[int, Any], fidelity: Any) -> tuple[Evaluation, float]:
        start = time.perf_counter()
        result = self.evaluate(candidate[1], candidate[0], fidelity)
        return result, time.perf_counter() - start

    def network_classes(self, data: SearchData | None) -> int | None:
        """Classes of the networks it scores (their exact cost is counted for them): the run's data's (None without
        data: then no cost is counted)."""
        return None if data is None else data.num_classes

    def report(self, genotype: Any) -> dict[str, float]:
        """What the evaluator knows about the final genotype beyond its score (the table's test accuracies)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (e.g. trained supernet weights)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` (before ``prepare``)."""


_BUILD_LOCK = threading.Lock()  # seeding + building under one lock: the global CPU RNG is shared by threads


def build_seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make()`` with the global CPU generator seeded by ``seed`` and restored afterwards."""
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
