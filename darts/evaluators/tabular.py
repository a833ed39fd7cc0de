"""Score a genotype by looking it up in a tabular benchmark: no data, no training.

The benchmark is a CSV table (``darts.data.tabular.Table``) or a NATS-Bench archive directory
(``darts.data.nats.NATSArchive``: every epoch of every schedule, each with its simulated training time, and each
trial's values). A fidelity is a number of training epochs, looked up in the column ``fidelity_column`` names for it
(e.g. ``cifar10_valid_4ep``: the validation accuracy after 4 epochs of NB201's 12-epoch schedule), or a column name.
The shipped NB201 CSV has only the 12-epoch columns; a NATS-Bench archive has them all (``EXPORT`` says how to add
them to a CSV instead).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from darts.context import Context
from darts.data.nats import NATSArchive
from darts.data.search_split import SearchData
from darts.data.tabular import Table
from darts.evaluators.base import Evaluation, Evaluator, candidate_seed
from search_spaces.base import SearchSpace

_TABLES: dict[tuple, Table | NATSArchive] = {}
TRIALS = ("mean", "random")
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16": 120}  # a column's dataset (its name's prefix) -> classes
NOT_SCORES = ("_params", "_flops", "_latency")  # an architecture's costs (a NATS-Bench archive's <data>_params...)
# how to get per-epoch validation columns for NB201 (NATS-Bench topology API, nats_bench.create)
EXPORT = ("point evaluator.path at the NATS-Bench archive directory NATS-tss-v1_0-3ffb9-simple (docs/nats.md), or "
          "export them from NATS-Bench: for each architecture index and epoch e, "
          "api.get_more_info(index, 'cifar10-valid', iepoch=e-1, hp='12', is_random=False)['valid-accuracy'] "
          "(and ['train-all-time'] as the column's _time), with api = nats_bench.create(None, 'tss', fast_mode=True)")


def _benchmark(path: Path, space: SearchSpace) -> Table | NATSArchive:
    """One benchmark per path, version and space type, shared by the runs of an in-process multirun: a directory is a
    NATS-Bench archive, a file a CSV table."""
    key = (str(path), path.stat().st_mtime_ns, type(space))
    if key not in _TABLES:
        _TABLES.clear()  # a multirun reads one benchmark: keep only the latest
        _TABLES[key] = NATSArchive(path, space) if path.is_dir() else Table(path, space)
    return _TABLES[key]


class TabularEvaluator(Evaluator):
    """A tabular benchmark lookup: the score is a validation column, never a test column.

    Args:
        space: the space the benchmark covers (NB201 for the shipped table and the NATS topology archive, the NATS size
            space for the NATS size archive).
        path: the CSV (``darts.data.tabular``; NB201: ``search_spaces/nb201/table.py``) or a NATS-Bench archive
            directory (``darts.data.nats``).
        column: the score, the default fidelity; ``cifar10_valid_12ep`` is NB201's search signal (R_EA.py/RANDOM.py
            ``train_and_eval``: 'cifar10-valid', 'valid-accuracy', hp '12'). A fidelity is another validation column.
        fidelity_column: the column of an integer fidelity (epochs), ``{epochs}`` standing for it; NATS-Bench's
            BOHB (AutoDL-Projects exps/NATS-algos/bohb.py) reads epoch ``budget`` of hp '12', so
            ``cifar10_valid_{epochs}ep`` with epochs 12 is ``column`` itself. Never a test column.
        cost_suffix: the cost of a lookup of column c is the benchmark's column ``c + cost_suffix`` (its recorded or
            simulated training time in seconds) where it has one, else 0 s (the shipped NB201 table has none).
        trial: ``mean``, the mean over the benchmark's trials (seeds); or ``random``, one trial drawn per evaluation,
            as NATS-Bench's ``simulate_train_eval`` (``is_random=True``), seeded by ``seed`` and the candidate's index
            (a NATS-Bench archive only: a CSV holds means).
        seed: seeds the trial draws (the run's seed).
        workers: threads (a lookup gains nothing from them, but the option means the same everywhere).
        data: never read, so a tabular run loads no dataset.
        context: the run's execution context (a lookup needs none of it).
    """

    def __init__(self, space: SearchSpace, path: str, column: str = "cifar10_valid_12ep", cost_suffix: str = "_time",
                 workers: int = 1, data: SearchData | None = None, fidelity_column: str = "cifar10_valid_{epochs}ep",
                 trial: str = "mean", seed: int = 0, context: Context = Context()):
        super().__init__(space, workers, context)
        file = Path(path).expanduser().resolve()
        if not file.exists():
            raise FileNotFoundError(f"evaluator.path={path!r}: no table or NATS-Bench archive directory there (the "
                                    "formats: darts/data/tabular.py, docs/nats.md)")
        self.benchmark = _benchmark(file, space)
        self.cost_suffix = cost_suffix
        self.column = self._score_column(column)
        if "{epochs}" not in fidelity_column or "test" in fidelity_column:
            raise ValueError(f"evaluator.fidelity_column={fidelity_column!r} must name a validation column with "
                             "{epochs} for the number of epochs, e.g. 'cifar10_valid_{epochs}ep'")
        self.fidelity_column = fidelity_column
        if trial not in TRIALS or (trial == "random" and not self.benchmark.per_trial):
            raise ValueError(f"evaluator.trial={trial!r} must be one of {list(TRIALS)}; 'random' needs per-trial "
                             f"records, a NATS-Bench archive directory as evaluator.path, not {file.name}")
        self.trial, self.seed = trial, seed

    def _scores(self, column: str) -> bool:
        """Whether ``column`` may score a search: not a test, training-set, time, loss or cost column."""
        return "test" not in column and "_train_" not in column and not column.endswith(
            (self.cost_suffix, "_loss", *NOT_SCORES))

    def _score_column(self, column: str) -> str:
        """``column`` if it is a validation accuracy of the benchmark, else ValueError naming the valid ones."""
        if not self.benchmark.knows(column) or not self._scores(column):
            raise ValueError(f"evaluator.column={column!r} cannot score a search; a validation column is needed: "
                             f"{[c for c in self.benchmark.columns if self._scores(c)]}")
        return column

    def fidelity_of(self, fidelity: int | str | None) -> str:
        """The column of a fidelity: ``column`` for None, a column name as given, epochs through ``fidelity_column``."""
        if fidelity is None or isinstance(fidelity, str):
            return self.column if fidelity is None else self._score_column(fidelity)
        column = self.fidelity_column.format(epochs=int(fidelity))
        if not self.benchmark.knows(column):
            raise ValueError(f"fidelity {fidelity} (epochs) needs the per-epoch validation column {column!r}, which "
                             f"{self.benchmark.path} lacks; {EXPORT}")
        return self._score_column(column)

    def evaluate(self, genotype: Any, index: int, fidelity: int | str | None = None) -> Evaluation:
        """The benchmark's value of the fidelity's column (``fidelity_of``), the mean over trials or the drawn trial's;
        the cost is the column's time, if any."""
        column = self.fidelity_of(fidelity)
        timing = column + self.cost_suffix
        if self.trial == "mean":
            cost = self.benchmark.query(genotype, timing) if self.benchmark.knows(timing) else 0.0
            return Evaluation(self.benchmark.query(genotype, column), cost)
        seeds = self.benchmark.seeds(genotype, column)
        seed = seeds[np.random.default_rng(candidate_seed(self.seed, index)).integers(len(seeds))]
        cost = self.benchmark.query(genotype, timing, seed=seed) if self.benchmark.knows(timing) else 0.0
        return Evaluation(self.benchmark.query(genotype, column, seed=seed), cost, {"trial_seed": float(seed)})

    def network_classes(self, data: SearchData | None) -> int:
        """The classes of the score column's dataset (``cifar10_*``: 10, ``cifar100_*``: 100, ``imagenet16_*``: 120):
        a table lookup loads no data."""
        name = self.column.split("_")[0]
        if name not in CLASSES:
            raise ValueError(f"evaluator.column={self.column!r}: no known dataset to count its networks' cost for; "
                             f"the column should start with one of {', '.join(CLASSES)}")
        return CLASSES[name]

    def report(self, genotype: Any) -> dict[str, float]:
        """The benchmark's summary: every column of a table; a NATS-Bench archive's accuracies at the end of each
        schedule, parameters, FLOPs and latency."""
        return self.benchmark.query(genotype)
