"""NAS-Bench-201 as a lookup table: the accuracies of all 15,625 cells, read from one CSV file.

NAS-Bench-201 (Dong & Yang, ICLR 2020) and its successor NATS-Bench topology space (Dong et al.,
TPAMI 2021) trained every cell of the space (``search_spaces.nb201``) with one fixed recipe, so a
search can be scored without training. This module reads a plain CSV export of those results.

CSV format: a header row, then one row per architecture (benchmark index order):

- ``index``: the benchmark's architecture index (0..15624).
- ``arch``: the NB201 string, e.g. ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``.
- every other column is a metric (a float, accuracy in %), in the shipped file:
  ``cifar10_valid_12ep`` / ``cifar10_test_12ep`` (12-epoch schedule), ``cifar100_valid_12ep`` /
  ``cifar100_test_12ep``, ``imagenet16_valid_12ep`` / ``imagenet16_test_12ep`` (ImageNet16-120), and
  ``cifar10_test_200ep``, ``cifar100_test_200ep``, ``imagenet16_test_200ep`` (200-epoch schedule,
  the numbers reported in the NB201 paper; mean over seeds).

Making the file from the official release: install the NATS-Bench API (``pip install nats_bench``),
download the topology archive ``NATS-tss-v1_0-3ffb9-simple`` linked from github.com/D-X-Y/NATS-Bench,
and create the API with ``nats_bench.create(archive_dir, 'tss', fast_mode=True, verbose=False)``.
For each index in ``range(len(api))``, ``api.arch(index)`` is the ``arch`` column and each metric is
one entry of ``api.get_more_info(index, dataset, hp=hp, is_random=False)`` (``is_random=False``
averages the trained seeds): ``cifar10_valid_12ep`` is dataset ``'cifar10-valid'``, hp ``'12'``, key
``'valid-accuracy'``; ``cifar10_test_12ep`` is ``'cifar10'`` (trained on train+valid), hp ``'12'``,
key ``'test-accuracy'``; the CIFAR-100 and ImageNet16-120 columns use ``'cifar100'`` and
``'ImageNet16-120'`` with keys ``'valid-accuracy'`` / ``'test-accuracy'``; the ``_200ep`` columns use
hp ``'200'`` and ``'test-accuracy'``. Write the rows with the ``csv`` module, header first. Any
extra numeric column is kept and can be queried by its name.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from search_spaces.nb201_genotype import NB201Genotype, format_arch, parse_arch

Arch = Union[str, NB201Genotype, Sequence]

_HOWTO = ("pass benchmark.path=/path/to/nb201_accuracies.csv; the CSV format and how to make it from "
          "the NATS-Bench topology release are in the docstring of darts/benchmarks/nb201.py")


class NB201Benchmark:
    """Ground-truth NB201 metrics by architecture (an NB201 string or genotype).

    Args:
        path: the CSV file (columns ``index``, ``arch``, then float metric columns).

    ``benchmark[arch]`` and ``query(arch)`` give ``{column: value}`` for every metric column;
    ``query(arch, column)`` gives one value; ``columns`` lists the metric columns.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"NB201 benchmark file not found: {self.path}; {_HOWTO}")
        self.columns, archs, self._indices, values = _read_csv(self.path)
        self.archs: tuple[str, ...] = tuple(archs)
        self._values = np.asarray(values, dtype=np.float64).reshape(len(archs), len(self.columns))  # [N, M]
        self._row = {arch: r for r, arch in enumerate(archs)}
        if len(self._row) != len(archs):
            raise ValueError(f"{self.path}: an architecture string appears more than once")

    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, arch: object) -> bool:
        """Whether ``arch`` is a valid NB201 architecture present in the table."""
        try:
            return _key(arch) in self._row
        except ValueError:
            return False

    def __getitem__(self, arch: Arch) -> dict[str, float]:
        """All metrics of ``arch``: ``{column: value}``."""
        return self.query(arch)

    def query(self, arch: Arch, column: str | None = None) -> dict[str, float] | float:
        """All metrics of ``arch`` as a dict, or the value of one ``column``.

        Raises ValueError for a malformed arch or an unknown column, KeyError for a valid arch
        missing from the table.
        """
        row = self._values[self._row_of(arch)]  # [M]
        if column is None:
            return {name: float(v) for name, v in zip(self.columns, row)}
        return float(row[self._column(column)])

    def index_of(self, arch: Arch) -> int:
        """The benchmark index of ``arch`` (the CSV ``index`` column)."""
        return self._indices[self._row_of(arch)]

    def values(self, column: str) -> np.ndarray:
        """The column over all architectures, in row order ([N] float64, a copy)."""
        return self._values[:, self._column(column)].copy()

    def best(self, column: str) -> tuple[str, float]:
        """The architecture with the highest value of ``column``, and that value (e.g. for regret)."""
        k = self._column(column)
        r = int(np.argmax(self._values[:, k]))
        return self.archs[r], float(self._values[r, k])

    def _row_of(self, arch: Arch) -> int:
        text = _key(arch)
        if text not in self._row:
            raise KeyError(f"architecture {text!r} is not in the NB201 table {self.path}")
        return self._row[text]

    def _column(self, column: str) -> int:
        if column not in self.columns:
            raise ValueError(f"unknown NB201 column {column!r}; valid columns: {list(self.columns)}")
        return self.columns.index(column)


def _read_csv(path: Path) -> tuple[tuple[str, ...], list[str], list[int], list[list[float]]]:
    """Metric column names, arch strings, benchmark indices and metric rows of the CSV."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "index" not in header or "arch" not in header:
            raise ValueError(f"{path}: the header needs 'index' and 'arch' columns, got {header}")
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
            archs.append(row[ia])
    return tuple(header[k] for k in metric_at), archs, indices, values


def _key(arch: object) -> str:
    """The canonical NB201 string of a string or genotype (ValueError when malformed)."""
    if isinstance(arch, str):
        return format_arch(parse_arch(arch))
    if isinstance(arch, Iterable):
        return format_arch(arch)
    raise ValueError(f"an NB201 arch must be a string or genotype, got {type(arch).__name__}")
