"""Tabular benchmarks: ground-truth metrics of every architecture of a space, looked up instead of trained.

A table is a CSV file with a header row, then one row per architecture:

- ``index``: the benchmark's index of the architecture;
- ``arch``: the architecture in its space's text form (``SearchSpace.to_text``);
- every other column is a number (a metric such as an accuracy in %, or a recorded training time).

``Table`` reads such a file for any space: each ``arch`` is parsed by the space when the file is
loaded (a string the space cannot parse is an error naming the file and line), and lookups accept a
genotype or its text. ``search_spaces.nb201.NB201Benchmark`` is the NAS-Bench-201 table. A NATS-Bench archive
directory (``darts.data.nats.NATSArchive``) answers the same queries from the benchmark's per-epoch records.
"""
from __future__ import annotations

import csv
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class GenotypeText(Protocol):
    """What a table needs of a search space (``search_spaces.base.SearchSpace`` has both): its genotypes' text."""

    def parse(self, text: str) -> Any: ...

    def to_text(self, genotype: Any) -> str: ...


class TabularBenchmark(Protocol):
    """What a run needs of a table: the metrics of a genotype."""

    columns: tuple[str, ...]

    def query(self, genotype: Any, column: str | None = None) -> dict[str, float] | float: ...


class ArchitectureIndex(ABC):
    """Architectures of a space looked up by genotype or text: ``archs`` (canonical texts, in the benchmark's order)
    and ``_row`` (text -> position), which a subclass fills; it answers ``query``."""

    archs: tuple[str, ...]
    space: GenotypeText
    _row: dict[str, int]

    def _index_archs(self, archs: tuple[str, ...], where: Path) -> None:
        """Keep ``archs`` and their positions (ValueError naming ``where`` if one appears twice)."""
        self.archs = archs
        self._row = {text: i for i, text in enumerate(archs)}
        if len(self._row) != len(archs):
            raise ValueError(f"{where}: an architecture appears more than once")

    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, arch: object) -> bool:
        """Whether ``arch`` is a valid architecture of the space listed here."""
        try:
            return self._key(arch) in self._row
        except ValueError:
            return False

    def __getitem__(self, arch: Any) -> dict[str, float]:
        """All summary metrics of ``arch``: ``{column: value}``."""
        return self.query(arch)

    @abstractmethod
    def query(self, arch: Any, column: str | None = None) -> dict[str, float] | float:
        """All metrics of ``arch`` as a dict, or the value of one ``column``."""

    def _key(self, arch: Any) -> str:
        """The canonical text of a genotype or its text (ValueError when the space cannot read it)."""
        return self.space.to_text(self.space.parse(arch) if isinstance(arch, str) else arch)


class Table(ArchitectureIndex):
    """Ground-truth metrics by architecture (a genotype of ``space`` or its text).

    Args:
        path: the CSV file (columns ``index``, ``arch``, then numeric columns).
        space: the space whose genotypes the rows describe.

    ``table[arch]`` and ``query(arch)`` give ``{column: value}`` for every metric column;
    ``query(arch, column)`` gives one value; ``columns`` lists the metric columns.
    """

    howto = "the CSV format is in the docstring of darts/data/tabular.py"
    space_hint = "is it the table of another search space?"
    per_trial = False  # one value per architecture and column (a NATS-Bench archive also has each trial's)

    def __init__(self, path: str | Path, space: GenotypeText):
        self.path = Path(path).expanduser()
        self.space = space
        if not self.path.is_file():
            raise FileNotFoundError(f"benchmark table not found: {self.path}; {self.howto}")
        self.columns, archs, self._indices, values = _read_csv(self.path, space, self.space_hint)
        self._index_archs(tuple(archs), self.path)
        self._values = np.asarray(values, dtype=np.float64).reshape(len(archs), len(self.columns))  # [N, M]

    def query(self, arch: Any, column: str | None = None) -> dict[str, float] | float:
        """All metrics of ``arch`` as a dict, or the value of one ``column``.

        Raises ValueError for a malformed arch or an unknown column, KeyError for a valid arch
        missing from the table.
        """
        row = self._values[self._row_of(arch)]  # [M]
        if column is None:
            return {name: float(v) for name, v in zip(self.columns, row)}
        return float(row[self.column_index(column)])

    def knows(self, column: str) -> bool:
        """Whether ``column`` is a metric column of the table."""
        return column in self.columns

    def index_of(self, arch: Any) -> int:
        """The benchmark index of ``arch`` (the CSV ``index`` column)."""
        return self._indices[self._row_of(arch)]

    def values(self, column: str) -> np.ndarray:
        """The column over all architectures, in row order ([N] float64, a copy)."""
        return self._values[:, self.column_index(column)].copy()

    def best(self, column: str) -> tuple[str, float]:
        """The architecture with the highest value of ``column``, and that value (e.g. for regret)."""
        k = self.column_index(column)
        r = int(np.argmax(self._values[:, k]))
        return self.archs[r], float(self._values[r, k])

    def column_index(self, column: str) -> int:
        """The position of a metric column; ValueError naming the valid ones."""
        if column not in self.columns:
            raise ValueError(f"unknown column {column!r} in {self.path}; valid columns: {list(self.columns)}")
        return self.columns.index(column)

    def _row_of(self, arch: Any) -> int:
        text = self._key(arch)
        if text not in self._row:
            raise KeyError(f"architecture {text!r} is not in the table {self.path}")
        return self._row[text]


def _read_csv(path: Path, space: GenotypeText,
              hint: str) -> tuple[tuple[str, ...], list[str], list[int], list[list[float]]]:
    """Metric column names, canonical arch texts, benchmark indices and metric rows of the CSV."""
    try:
        with path.open(newline="") as f:
            return _read_rows(path, csv.reader(f), space, hint)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path} is not a text CSV file ({err})") from None


def _read_rows(path: Path, reader, space: GenotypeText,
               hint: str) -> tuple[tuple[str, ...], list[str], list[int], list[list[float]]]:
    header = next(reader, [])
    if "index" not in header or "arch" not in header:
        raise ValueError(f"{path}: the header needs 'index' and 'arch' columns, got {header[:10]}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: the header repeats the columns {repeated}")
    ia, ii = header.index("arch"), header.index("index")
    metric_at = [k for k in range(len(header)) if k not in (ia, ii)]
    archs, indices, values = [], [], []
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
        try:
            indices.append(int(row[ii]))
            values.append([float(row[k]) for k in metric_at])
        except ValueError as err:
            raise ValueError(f"{path}:{line}: a non-numeric index or metric ({err})") from None
        bad = [header[k] for k, v in zip(metric_at, values[-1]) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{path}:{line}: non-finite value in column {bad[0]!r}")
        try:
            archs.append(space.to_text(space.parse(row[ia])))
        except ValueError as err:
            raise ValueError(f"{path}:{line}: arch {row[ia][:60]!r} is not a genotype of {type(space).__name__} "
                             f"({err}); {hint}") from None
    if not archs:
        raise ValueError(f"{path} holds no architecture rows")
    return tuple(header[k] for k in metric_at), archs, indices, values
