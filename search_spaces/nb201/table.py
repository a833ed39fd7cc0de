"""NAS-Bench-201 as a lookup table: the accuracies of all 15,625 cells, read from one CSV file (``darts.data.tabular``).

NAS-Bench-201 (Dong & Yang, ICLR 2020) and its successor NATS-Bench topology space (Dong et al.,
TPAMI 2021) trained every cell of the space (``search_spaces.nb201``) with one fixed recipe, so a
search can be scored without training. ``NB201Benchmark`` reads a plain CSV export of those results.

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

from pathlib import Path

from darts.data.tabular import Table
from search_spaces.nb201.space import NB201Space


class NB201Benchmark(Table):
    """Ground-truth NB201 metrics by architecture (an NB201 string or genotype); ``darts.data.tabular.Table`` of the NB201 space.

    Args:
        path: the CSV file (columns ``index``, ``arch``, then float metric columns).
        space: the NB201 space (its size does not matter: only its genotypes are read).
    """

    howto = ("pass benchmark.path=/path/to/nb201_accuracies.csv; the CSV format and how to make it from the "
             "NATS-Bench topology release are in the docstring of search_spaces/nb201/table.py")
    space_hint = "benchmark.path is for search_space=nb201 (the NAS-Bench-201 table)"

    def __init__(self, path: str | Path, space: NB201Space | None = None):
        super().__init__(path, space or NB201Space())
