"""Score a genotype by looking it up in a tabular benchmark (``darts.data.tabular.Table``): no data, no training.

A fidelity is a number of training epochs, looked up in the column ``fidelity_column`` names for it (e.g.
``cifar10_valid_4ep``: the validation accuracy after 4 epochs of NB201's 12-epoch schedule), or a column
name. The shipped NB201 table has only the 12-epoch columns; ``EXPORT`` says how to add per-epoch ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from darts.evaluators.base import Evaluation, Evaluator
from darts.context import Context
from darts.data.search_split import SearchData
from darts.data.tabular import Table
from search_spaces.base import SearchSpace

_TABLES: dict[tuple, Table] = {}
# how to add per-epoch validation columns to the NB201 table (NATS-Bench topology API, nats_bench.create)
EXPORT = ("export them from NATS-Bench: for each architecture index and epoch e, "
          "api.get_more_info(index, 'cifar10-valid', iepoch=e-1, hp='12', is_random=False)['valid-accuracy'] "
          "(and ['train-all-time'] as the column's _time), with api = nats_bench.create(None, 'tss', fast_mode=True)")


def _table(file: Path, space: SearchSpace) -> Table:
    """One table per file, version and space type, shared by the runs of an in-process multirun."""
    key = (str(file), file.stat().st_mtime_ns, type(space))
    if key not in _TABLES:
        _TABLES.clear()  # a multirun reads one table: keep only the latest
        _TABLES[key] = Table(file, space)
    return _TABLES[key]


class TabularEvaluator(Evaluator):
    """A tabular benchmark lookup (``darts.data.tabular.Table``): the score is a validation column, never a test column.

    Args:
        space: the space the table covers (NB201 for the shipped table).
        path: the CSV (``darts.data.tabular``; NB201: ``search_spaces/nb201/table.py``).
        column: the score, the default fidelity; ``cifar10_valid_12ep`` is NB201's search signal (R_EA.py/RANDOM.py
            ``train_and_eval``: 'cifar10-valid', 'valid-accuracy', hp '12'). A fidelity is another validation column.
        fidelity_column: the column of an integer fidelity (epochs), ``{epochs}`` standing for it; NATS-Bench's
            BOHB (AutoDL-Projects exps/NATS-algos/bohb.py) reads epoch ``budget`` of hp '12', so
            ``cifar10_valid_{epochs}ep`` with epochs 12 is ``column`` itself. Never a test column.
        cost_suffix: the cost of a lookup of column c is the table's column ``c + cost_suffix`` (its recorded
            training time in seconds) where the table has one, else 0 s (the shipped NB201 table has none).
        workers: threads (a lookup gains nothing from them, but the option means the same everywhere).
        data: never read, so a tabular run loads no dataset.
        context: the run's execution context (a lookup needs none of it).
    """

    def __init__(self, space: SearchSpace, path: str, column: str = "cifar10_valid_12ep", cost_suffix: str = "_time",
                 workers: int = 1, data: SearchData | None = None, fidelity_column: str = "cifar10_valid_{epochs}ep",
                 context: Context = Context()):
        super().__init__(space, workers, context)
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise FileNotFoundError(f"evaluator.path={path!r}: no table there (the format is in darts/data/tabular.py)")
        self.benchmark = _table(file, space)
        self.cost_suffix = cost_suffix
        self.column = self._score_column(column)
        if "{epochs}" not in fidelity_column or "test" in fidelity_column:
            raise ValueError(f"evaluator.fidelity_column={fidelity_column!r} must name a validation column with "
                             "{epochs} for the number of epochs, e.g. 'cifar10_valid_{epochs}ep'")
        self.fidelity_column = fidelity_column

    def _score_column(self, column: str) -> str:
        """``column`` if it is a validation column of the table, else ValueError naming the valid ones."""
        valid = [c for c in self.benchmark.columns if "test" not in c and not c.endswith(self.cost_suffix)]
        if column not in valid:
            raise ValueError(f"evaluator.column={column!r} cannot score a search; a validation column is needed: {valid}")
        return column

    def fidelity_of(self, fidelity: int | str | None) -> str:
        """The column of a fidelity: ``column`` for None, a column name as given, epochs through ``fidelity_column``."""
        if fidelity is None or isinstance(fidelity, str):
            return self.column if fidelity is None else self._score_column(fidelity)
        column = self.fidelity_column.format(epochs=int(fidelity))
        if column not in self.benchmark.columns:
            raise ValueError(f"fidelity {fidelity} (epochs) needs the per-epoch validation column {column!r}, which "
                             f"{self.benchmark.path} lacks; {EXPORT}")
        return self._score_column(column)

    def evaluate(self, genotype: Any, index: int, fidelity: int | str | None = None) -> Evaluation:
        """The table's value of the fidelity's column (``fidelity_of``); the cost is its recorded time, if any."""
        column = self.fidelity_of(fidelity)
        timing = column + self.cost_suffix
        cost = self.benchmark.query(genotype, timing) if timing in self.benchmark.columns else 0.0
        return Evaluation(self.benchmark.query(genotype, column), cost)

    def report(self, genotype: Any) -> dict[str, float]:
        """Every column of the table (validation and test accuracies)."""
        return self.benchmark.query(genotype)
