"""Evaluators score a genotype for a discrete search: a score to maximise and the cost it stands for.

- ``TabularEvaluator``: a NAS-Bench-201 table lookup (no data, no training);
- ``TrainEvaluator``: train the genotype's network from scratch on the weight half of the search split,
  score its accuracy on the validation half;
- ``SupernetEvaluator``: random search with weight sharing (Li and Talwalkar, UAI 2019, sec. 4.2):
  train the supernet on uniformly sampled single paths once, then score each genotype with the
  shared weights.

Every evaluator is built with the run's ``space`` and ``data`` (a ``darts.search_data.SearchData``,
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

from functools import partial
import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.schedules import Cosine
from darts.search_data import SearchData
from darts.tabular import Table
from darts.trainer import evaluate, set_lr, train_epoch
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
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
    """Scores genotypes of ``space``; ``workers`` > 1 scores the candidates of a generation concurrently."""

    def __init__(self, space: SearchSpace, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        self.space, self.workers = space, workers

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

    def report(self, genotype: Any) -> dict[str, float]:
        """What the evaluator knows about the final genotype beyond its score (the table's test accuracies)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (e.g. trained supernet weights)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` (before ``prepare``)."""


_TABLES: dict[tuple, Table] = {}


def _table(file: Path, space: SearchSpace) -> Table:
    """One table per file, version and space type, shared by the runs of an in-process multirun."""
    key = (str(file), file.stat().st_mtime_ns, type(space))
    if key not in _TABLES:
        _TABLES.clear()  # a multirun reads one table: keep only the latest
        _TABLES[key] = Table(file, space)
    return _TABLES[key]


class TabularEvaluator(Evaluator):
    """A tabular benchmark lookup (``darts.tabular.Table``): the score is a validation column, never a test column.

    Args:
        space: the space the table covers (NB201 for the shipped table).
        path: the CSV (``darts.tabular``; NB201: ``search_spaces/nb201/table.py``).
        column: the score, the default fidelity; ``cifar10_valid_12ep`` is NB201's search signal (R_EA.py/RANDOM.py
            ``train_and_eval``: 'cifar10-valid', 'valid-accuracy', hp '12'). A fidelity is another validation column.
        cost_suffix: the cost of a lookup of column c is the table's column ``c + cost_suffix`` (its recorded
            training time in seconds) where the table has one, else 0 s (the shipped NB201 table has none).
        workers: threads (a lookup gains nothing from them, but the option means the same everywhere).
        data: never read, so a tabular run loads no dataset.
    """

    def __init__(self, space: SearchSpace, path: str, column: str = "cifar10_valid_12ep", cost_suffix: str = "_time",
                 workers: int = 1, data: SearchData | None = None):
        super().__init__(space, workers)
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise FileNotFoundError(f"evaluator.path={path!r}: no table there (the format is in darts/tabular.py)")
        self.benchmark = _table(file, space)
        self.cost_suffix = cost_suffix
        self.column = self._score_column(column)

    def _score_column(self, column: str) -> str:
        """``column`` if it is a validation column of the table, else ValueError naming the valid ones."""
        valid = [c for c in self.benchmark.columns if "test" not in c and not c.endswith(self.cost_suffix)]
        if column not in valid:
            raise ValueError(f"evaluator.column={column!r} cannot score a search; a validation column is needed: {valid}")
        return column

    def evaluate(self, genotype: Any, index: int, fidelity: str | None = None) -> Evaluation:
        """The table's value of the fidelity's column (default ``column``); the cost is its recorded time, if any."""
        column = self.column if fidelity is None else self._score_column(fidelity)
        timing = column + self.cost_suffix
        cost = self.benchmark.query(genotype, timing) if timing in self.benchmark.columns else 0.0
        return Evaluation(self.benchmark.query(genotype, column), cost)

    def report(self, genotype: Any) -> dict[str, float]:
        """Every column of the table (validation and test accuracies)."""
        return self.benchmark.query(genotype)


_BUILD_LOCK = threading.Lock()  # seeding + building under one lock: the global CPU RNG is shared by threads


def build_seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make()`` with the global CPU generator seeded by ``seed`` and restored afterwards."""
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


class TrainEvaluator(Evaluator):
    """Train the genotype's network (``space.build_network``) from scratch, score its validation accuracy.

    Defaults are NAS-Bench-201's 12-epoch schedule, the one behind its ``*_12ep`` columns (AutoDL-Projects
    configs/nas-benchmark/hyper-opts/12E.config): SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed
    per step to 0, weight decay 5e-4, batch 256, 12 epochs. Each candidate's initial weights and data
    order are seeded by ``candidate_seed(seed, index)``. The cost is the wall time of the evaluation.

    Args:
        space, data: the run's space and search split.
        epochs, batch_size, lr, lr_min, momentum, nesterov, weight_decay: the training recipe.
        steps_per_epoch: cap on training steps per epoch (smoke runs); None = full passes.
        eval_batches: cap on validation batches; None = the whole validation half.
        seed: the run seed.
        workers: candidates trained at once (threads).
    """

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 12, batch_size: int = 256,
                 lr: float = 0.1, lr_min: float = 0.0, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 5e-4, steps_per_epoch: int | None = None, eval_batches: int | None = None,
                 seed: int = 0, workers: int = 1):
        super().__init__(space, workers)
        if epochs < 1:
            raise ValueError(f"evaluator.epochs={epochs} must be >= 1")
        self.data, self.epochs, self.batch_size, self.seed = data, epochs, batch_size, seed
        self.optimizer = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        self.schedule = Cosine(lr_min, per_step=True)
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Load the dataset (in the main thread, before any worker starts)."""
        self.data.load()

    def evaluate(self, genotype: Any, index: int, fidelity: int | None = None) -> Evaluation:
        """Train for ``fidelity`` epochs (default ``epochs``) on the weight half, then the accuracy (%) on the
        validation half; the cost is the wall time."""
        epochs = self.epochs if fidelity is None else int(fidelity)
        if epochs < 1:
            raise ValueError(f"a TrainEvaluator fidelity is a number of epochs >= 1, got {fidelity!r}")
        start = time.perf_counter()
        seed = candidate_seed(self.seed, index)
        net = build_seeded(lambda: self.space.build_network(genotype, self.data.num_classes), seed).to(self.data.device)
        loader = self.data.weight_loader(self.batch_size, seed)
        steps = min(len(loader), self.steps_per_epoch or len(loader))
        optimizer = torch.optim.SGD(net.parameters(), **self.optimizer)
        lr = self.optimizer["lr"]
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            # 12E.config "scheduler": "cos", updated every iteration (xautodl CosineAnnealingLR with iterations)
            train = train_epoch(net, loader, optimizer, steps, self.data.device, _cross_entropy, progress=False,
                                lr_at_step=lambda step: self.schedule(lr, epoch + step / steps, epochs))
        net.eval()
        valid_loader = self.data.valid_loader(self.batch_size)
        valid = evaluate(net, valid_loader, min(len(valid_loader), self.eval_batches or len(valid_loader)),
                         self.data.device, progress=False)
        return Evaluation(valid["acc"], time.perf_counter() - start,
                          {"train_acc": train["acc"], "train_loss": train["loss"], "valid_loss": valid["loss"]})


class _SinglePath(nn.Module):
    """The supernet running a fresh uniformly sampled genotype (``space.sample`` -> ``one_hot``) per forward."""

    def __init__(self, supernet: nn.Module, space: SearchSpace, generator: torch.Generator):
        super().__init__()
        self.supernet, self.space, self.generator = supernet, space, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) through one random path."""
        return self.supernet(x, self.space.one_hot(self.space.sample(self.generator)))


class SupernetEvaluator(Evaluator):
    """Random search with weight sharing (Li and Talwalkar, UAI 2019, sec. 4.2; liamcli/randomNAS_release).

    ``prepare`` trains the supernet for ``epochs`` on the weight half, one uniformly sampled single path
    per step (other edges run `none`), with SGD and a per-epoch cosine schedule as the DARTS search
    (darts_wrapper_discrete.py). A genotype's score is then its accuracy with the shared weights, the
    supernet in eval mode (as darts_wrapper_discrete.py ``evaluate``), on the same first ``eval_batches``
    batches of the validation half for every candidate. The cost is the wall time of that scoring.

    Args:
        space, data: the run's space and search split.
        epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip: the supernet training.
        steps_per_epoch: cap on training steps per epoch (smoke runs); None = full passes.
        eval_batches: validation batches per score (darts_wrapper_discrete.py ``evaluate``: 10).
        seed: seeds the supernet's weights and the sampled paths.
        workers: candidates scored at once (threads; scoring only reads the shared weights).
        progress: progress bars during the training phase.
    """

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 100, batch_size: int = 64,
                 lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float = 0.25, steps_per_epoch: int | None = None, eval_batches: int = 10,
                 seed: int = 0, workers: int = 1, progress: bool = True):
        super().__init__(space, workers)
        if epochs < 0 or eval_batches < 1:
            raise ValueError(f"evaluator.epochs={epochs} must be >= 0 and eval_batches={eval_batches} >= 1")
        self.data, self.epochs, self.batch_size, self.seed, self.progress = data, epochs, batch_size, seed, progress
        self.sgd = dict(lr=lr, lr_min=lr_min, momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip)
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches
        self.trained_epochs = 0
        self._restored: dict[str, Any] | None = None

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Train the shared weights for the remaining epochs (``on_epoch`` after each), then fix the scoring batches."""
        s, device = self.sgd, self.data.device
        self.supernet = build_seeded(lambda: self.space.build_supernet(self.data.num_classes), self.seed).to(device)
        self.optimizer = torch.optim.SGD(self.supernet.weight_parameters(), s["lr"], momentum=s["momentum"],
                                         weight_decay=s["weight_decay"])
        self.paths = torch.Generator().manual_seed(self.seed)
        if self._restored is not None:
            self._restore(self._restored)
        loader = self.data.weight_loader(self.batch_size, self.seed)
        steps = min(len(loader), self.steps_per_epoch or len(loader))
        model = _SinglePath(self.supernet, self.space, self.paths)
        schedule = Cosine(s["lr_min"])  # darts_wrapper_discrete.py: CosineAnnealingLR stepped per epoch
        for epoch in range(self.trained_epochs, self.epochs):
            lr = schedule(s["lr"], epoch, self.epochs)
            set_lr(self.optimizer, lr)
            loader.set_epoch(epoch)
            metrics = train_epoch(model, loader, self.optimizer, steps, device, _cross_entropy, s["grad_clip"],
                                  f"supernet {epoch}", self.progress)
            self.trained_epochs = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": metrics["loss"], "train_acc": metrics["acc"], "lr": lr})
        self.supernet.eval()
        self.batches = list(islice(self.data.valid_loader(self.batch_size), self.eval_batches))

    def evaluate(self, genotype: Any, index: int, fidelity: None = None) -> Evaluation:
        """Validation accuracy (%) of ``genotype`` with the shared weights (no fidelity: the weights are trained once)."""
        if fidelity is not None:
            raise ValueError(f"evaluator=supernet takes no fidelity, got {fidelity!r}")
        start = time.perf_counter()
        mixing = self.space.one_hot(genotype)
        result = evaluate(lambda x: self.supernet(x, mixing), self.batches, len(self.batches), self.data.device,
                          progress=False)
        return Evaluation(result["acc"], time.perf_counter() - start, {"valid_loss": result["loss"]})

    def state_dict(self) -> dict[str, Any]:
        """Trained epochs, supernet, optimizer and path generator."""
        return {"epoch": self.trained_epochs, "supernet": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "paths": self.paths.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep ``state`` to restore once ``prepare`` has built the supernet."""
        self._restored = state

    def _restore(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.paths.set_state(state["paths"])
        self.trained_epochs = state["epoch"]


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) for ``train_epoch``."""
    return F.cross_entropy(logits, y), logits
