"""One architecture's NATS-Bench record, read from the plain data of its archive file and queried as NATS-Bench's API
queries it (D-X-Y/NATS-Bench ``nats_bench/api_utils.py``):

- a trial (``ResultsCount``) holds, per epoch i (0-based), the train accuracy/loss/time (``train_acc1es[i]``,
  ``train_losses[i]``, ``train_times[i]``) and, per evaluation set s, ``eval_acc1es['s@i']``, ``eval_losses['s@i']``,
  ``eval_times['s@i']``; its ``all_time`` after epoch i is the sum of the times of epochs 0..i (``get_train``,
  ``get_eval``);
- the value of several trials is the mean of theirs (``get_metrics(..., is_random=False)``), or one trial's
  (``is_random=<seed>``);
- a column's ``_time`` is ``simulate_train_eval``'s cost: train-all-time + the set's all-time / epochs (its per-epoch
  time), i.e. training to that epoch and evaluating once;
- FLOPs and parameters are the trials' mean, or seed 888's where the trials disagree (``get_compute_costs``
  ``fix_legacy_issue``, NATS-Bench v1.6); the latency is the mean of the trials' positive latencies.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darts.data.nats_columns import SEARCH_SCHEDULE, Column

LEGACY_SEED = 888  # get_compute_costs: the trial whose FLOPs and parameters are right when the trials disagree


@dataclass(frozen=True)
class Trial:
    """One training run: per (split, 'accuracy' | 'loss' | 'time') its per-epoch values ([epochs] float64; no 'time'
    where the archive recorded none), and its parameters, FLOPs and mean latency (None if not measured)."""

    epochs: int
    series: dict[tuple[str, str], np.ndarray]
    params: float
    flops: float
    latency: float | None


@dataclass(frozen=True)
class Record:
    """An architecture's trials: ``schedules[epochs][dataset][seed]``; ``arch_str`` as the file writes it."""

    arch_str: str
    schedules: dict[int, dict[str, dict[int, Trial]]]
    file: Path

    def trials(self, column: Column, seed: int | None) -> list[Trial]:
        """The trials behind ``column``: all of them, or the one of ``seed``."""
        schedule = column.schedule or SEARCH_SCHEDULE
        by_seed = self.schedules.get(schedule, {}).get(column.dataset)
        if not by_seed:
            raise ValueError(f"{self.file} has no {column.dataset!r} trials of the {schedule}-epoch schedule")
        if seed is None:
            return list(by_seed.values())
        if seed not in by_seed:
            raise ValueError(f"{self.file}: no {column.dataset!r} trial of seed {seed}; its seeds: {sorted(by_seed)}")
        return [by_seed[seed]]

    def seeds(self, column: Column) -> tuple[int, ...]:
        """The seeds of the trials behind ``column``."""
        return tuple(self.schedules.get(column.schedule or SEARCH_SCHEDULE, {}).get(column.dataset, {}))

    def value(self, column: Column, seed: int | None) -> float | None:
        """The column's value: the mean over its trials (``seed`` None) or the trial of ``seed``; a cost is over all
        trials of the search schedule, and a latency None where none was measured."""
        if column.epoch is None:
            return _cost(self.trials(column, None), column.kind)
        return float(np.mean([self._metric(t, column) for t in self.trials(column, seed)]))

    def _metric(self, trial: Trial, column: Column) -> float:
        """One trial's accuracy, loss or simulated time at ``column.epoch``."""
        i = column.epoch - 1
        if column.kind != "time":
            if (column.split, column.kind) not in trial.series:
                raise ValueError(f"{self.file}: no {column.split!r} {column.kind} of {column.dataset!r}")
            value = float(trial.series[(column.split, column.kind)][i])
            if np.isnan(value):
                raise ValueError(f"{self.file}: {column.dataset!r} {column.split!r} was not evaluated after epoch "
                                 f"{column.epoch} of the {column.schedule}-epoch schedule")
            return value
        train = trial.series.get(("train", "time"))
        evaluated = trial.series.get((column.split, "time")) if column.split != "train" else np.zeros(trial.epochs)
        if train is None or evaluated is None:
            raise ValueError(f"{self.file}: no recorded times of {column.dataset!r} {column.split!r}")
        return float(train[:i + 1].sum() + evaluated[:i + 1].sum() / column.epoch)


def _cost(trials: list[Trial], kind: str) -> float | None:
    """``get_compute_costs``: FLOPs/parameters averaged (seed 888's if they disagree), latency over positive ones."""
    if kind == "latency":
        measured = [t.latency for t in trials if t.latency is not None and t.latency > 0]
        return float(np.mean(measured)) if measured else None
    values = [t.params if kind == "params" else t.flops for t in trials]
    return float(np.mean(values))


def read_record(data: Any, file: Path) -> Record:
    """The record of an architecture file's plain data (``ArchResults.state_dict()`` per schedule key);
    ValueError naming the file when it is not one."""
    try:
        return _record(data, file)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"{file} is not a NATS-Bench architecture record ({type(err).__name__}: {err})") from None


def _record(data: dict, file: Path) -> Record:
    schedules, arch_str = {}, None
    for hp, results in data.items():
        arch_str = results["arch_str"]
        by_dataset: dict[str, dict[int, Trial]] = {}
        for (dataset, seed), result in sorted(results["all_results"].items(), key=lambda item: item[0][1]):
            by_dataset.setdefault(dataset, {})[int(seed)] = _trial(result)
        by_dataset = {name: _fix_legacy(trials) for name, trials in by_dataset.items()}
        schedules[int(hp)] = by_dataset
    if not isinstance(arch_str, str):
        raise ValueError("no schedule with an 'arch_str'")
    return Record(arch_str, schedules, file)


def _trial(result: dict) -> Trial:
    """A ``ResultsCount`` state dict as a trial."""
    epochs = int(result["epochs"])
    series = {("train", "accuracy"): _series(result["train_acc1es"], range(epochs)),
              ("train", "loss"): _series(result["train_losses"], range(epochs))}
    if result.get("train_times"):
        series[("train", "time")] = _series(result["train_times"], range(epochs))
    for name in result["eval_names"]:
        keys = [f"{name}@{i}" for i in range(epochs)]
        series[(name, "accuracy")] = _series(result["eval_acc1es"], keys, sparse=True)
        series[(name, "loss")] = _series(result["eval_losses"], keys, sparse=True)
        if result.get("eval_times"):
            series[(name, "time")] = _series(result["eval_times"], keys)
    latency = result.get("latency")
    return Trial(epochs, series, float(result["params"]), float(result["flop"]),
                 float(np.mean(latency)) if latency else None)


def _series(values: dict, keys, sparse: bool = False) -> np.ndarray:
    """The values of ``keys`` in order ([len(keys)] float64); ``sparse``: NaN for a key not recorded (NATS-Bench
    evaluated some sets of the 200-epoch schedule after the last epoch only)."""
    return np.array([float(values[k]) if not sparse or k in values else np.nan for k in keys], dtype=np.float64)


def _fix_legacy(trials: dict[int, Trial]) -> dict[int, Trial]:
    """Trials whose FLOPs or parameters disagree (to 5 decimals) all take seed 888's (``fix_legacy_issue``)."""
    for kind in ("params", "flops"):
        values = {f"{getattr(t, kind):.5f}" for t in trials.values()}
        if len(values) > 1 and LEGACY_SEED in trials:
            right = getattr(trials[LEGACY_SEED], kind)
            trials = {seed: Trial(t.epochs, t.series, right if kind == "params" else t.params,
                                  right if kind == "flops" else t.flops, t.latency) for seed, t in trials.items()}
    return trials
