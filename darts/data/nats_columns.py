"""The column names of a NATS-Bench archive (``darts.data.nats``), as the NB201 CSV (``search_spaces/nb201/table.py``)
names its columns, extended to every epoch of every schedule.

    <data>_<set>_<e>ep           accuracy (%) after epoch e of the 12-epoch schedule (e <= 12), e.g. cifar10_valid_4ep;
                                 for e > 12, after the last epoch of the e-epoch schedule, e.g. cifar10_test_200ep
    <data>_<set>_<e>of<H>ep      accuracy after epoch e of the H-epoch schedule, e.g. cifar10_valid_50of200ep,
                                 cifar10_valid_1of1ep (the size space's 1-epoch schedule)
    ..._loss                     the loss instead of the accuracy, e.g. cifar10_valid_4ep_loss
    ..._time                     the simulated seconds of training to that epoch and evaluating once: NATS-Bench's
                                 ``simulate_train_eval`` cost, train-all-time + valid-per-time (api_utils.py)
    <data>_params | _flops | _latency   parameters (millions, "MB" in NATS-Bench), FLOPs (millions), latency (s)

``<data>`` and ``<set>`` name the archive's (dataset, evaluation set), as NATS-Bench's ``get_more_info`` reads them:

    cifar10_valid    'cifar10-valid' 'x-valid'   (trained on the CIFAR-10 train split; the search signal)
    cifar10_test     'cifar10'       'ori-test'  (trained on train + valid)
    cifar100_valid   'cifar100'      'x-valid'        cifar100_test     'cifar100'       'x-test'
    imagenet16_valid 'ImageNet16-120' 'x-valid'       imagenet16_test   'ImageNet16-120' 'x-test'
    <data>_train     the training set of the dataset behind <data>_valid

The 12-epoch schedule is NATS-Bench's search proxy (AutoDL-Projects exps/NATS-algos/*.py ``hp="12"``); costs are read
from it, as ``get_cost_info``'s default ``hp="12"``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

SEARCH_SCHEDULE = 12  # NATS-Bench's search proxy: the 12-epoch schedule (hp "12")
# our dataset name -> (archive dataset, evaluation set) of each set name
SETS = {"cifar10": {"train": ("cifar10-valid", "train"), "valid": ("cifar10-valid", "x-valid"),
                    "test": ("cifar10", "ori-test")},
        "cifar100": {"train": ("cifar100", "train"), "valid": ("cifar100", "x-valid"), "test": ("cifar100", "x-test")},
        "imagenet16": {"train": ("ImageNet16-120", "train"), "valid": ("ImageNet16-120", "x-valid"),
                       "test": ("ImageNet16-120", "x-test")}}
COSTS = ("params", "flops", "latency")
_DATA = "|".join(SETS)
_METRIC = re.compile(rf"(?P<data>{_DATA})_(?P<set>train|valid|test)_(?P<epoch>[1-9]\d*)(?:of(?P<hp>[1-9]\d*))?ep"
                     r"(?P<kind>_loss|_time)?")
_COST = re.compile(rf"(?P<data>{_DATA})_(?P<kind>{'|'.join(COSTS)})")


@dataclass(frozen=True)
class Column:
    """A parsed column: the archive's ``dataset`` and evaluation ``split`` ('train', 'x-valid', ...), the ``kind``
    ('accuracy', 'loss', 'time', or a cost), the ``epoch`` (1-based) of the ``schedule`` (epochs; None for costs)."""

    dataset: str
    split: str
    kind: str
    epoch: int | None = None
    schedule: int | None = None


class Schedules(Protocol):
    """What ``column_names`` needs of a record: its schedules' datasets."""

    schedules: dict[int, dict[str, dict]]


def parse_column(name: str) -> Column | None:
    """The column ``name`` stands for, or None when it is not a column name of an archive."""
    cost = _COST.fullmatch(name)
    if cost:
        return Column(SETS[cost["data"]]["test"][0], "", cost["kind"])
    metric = _METRIC.fullmatch(name)
    if metric is None:
        return None
    epoch = int(metric["epoch"])
    schedule = int(metric["hp"]) if metric["hp"] else (SEARCH_SCHEDULE if epoch <= SEARCH_SCHEDULE else epoch)
    if epoch > schedule:
        return None
    dataset, split = SETS[metric["data"]][metric["set"]]
    return Column(dataset, split, (metric["kind"] or "_accuracy")[1:], epoch, schedule)


def metric_name(data: str, subset: str, epoch: int, schedule: int) -> str:
    """The shortest name of an accuracy column (``parse_column``'s inverse)."""
    if schedule == SEARCH_SCHEDULE or epoch == schedule > SEARCH_SCHEDULE:
        return f"{data}_{subset}_{epoch}ep"
    return f"{data}_{subset}_{epoch}of{schedule}ep"


def column_names(record: Schedules) -> tuple[str, ...]:
    """The summary columns of an archive whose records look like ``record``: for each dataset it holds, the validation
    and test accuracy at the end of each schedule (the NB201 CSV's columns for the topology archive), then its
    parameters, FLOPs and latency."""
    names = []
    for data, sets in SETS.items():
        for schedule, datasets in sorted(record.schedules.items()):
            names += [metric_name(data, s, schedule, schedule) for s in ("valid", "test") if sets[s][0] in datasets]
    costs = record.schedules.get(SEARCH_SCHEDULE, {})
    names += [f"{data}_{kind}" for data, sets in SETS.items() if sets["test"][0] in costs for kind in COSTS]
    return tuple(names)
