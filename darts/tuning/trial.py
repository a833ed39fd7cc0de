"""The trial's side of a study: a run started by the sweeper for trial k finds the study in ``DARTS_TRIAL`` (set per job
through ``hydra.job.env_set``, so it reaches jobs in other processes and on other machines), reports its per-epoch
metric to the trial, and stops with ``Pruned`` when the study's pruner says so (Optuna's ``Trial.report`` and
``Trial.should_prune``; the run lifecycle then marks its directory pruned)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from darts.tuning.algorithms import pruner

VARIABLE = "DARTS_TRIAL"
PRUNED = "pruned"  # result.json's status of a pruned run


class Pruned(Exception):
    """The study's pruner stopped the trial after ``epoch`` (its ``metric`` was ``value``)."""

    def __init__(self, epoch: int, metric: str, value: float):
        super().__init__(f"pruned after epoch {epoch + 1}: {metric} {value:.4g}")
        self.epoch, self.metric, self.value = epoch, metric, value

    def result(self) -> dict[str, Any]:
        """The pruned run's ``result.json``: its status, the epoch it stopped after and the metric's last value."""
        return {"status": PRUNED, "pruned_after_epoch": self.epoch, self.metric: self.value}


@dataclass(frozen=True)
class TrialLink:
    """Trial ``number`` of the study ``study`` in ``storage``, run in ``run_dir``, which reports ``metric`` each epoch
    (None: nothing) and is pruned by ``pruner`` (a name of ``darts.tuning.algorithms.PRUNERS``, None: never) with ``pruner_args``."""

    storage: str
    study: str
    number: int
    run_dir: str
    metric: str | None = None
    pruner: str | None = None
    pruner_args: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        """The link as the text of ``DARTS_TRIAL``."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_environment(cls, run_dir: str | Path) -> TrialLink | None:
        """The link in ``DARTS_TRIAL`` if it is for ``run_dir`` (a run the trial's run starts itself, e.g. an
        evaluator's training, reports nothing); None outside a trial."""
        text = os.environ.get(VARIABLE)
        if not text:
            return None
        link = cls(**json.loads(text))
        return link if Path(link.run_dir).resolve() == Path(run_dir).resolve() else None

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        """Report ``metrics[metric]`` as the trial's value at ``epoch`` (nothing without a metric); ``Pruned`` if the
        pruner stops the trial, ValueError if the epoch has no such metric (naming those it has)."""
        import optuna

        if self.metric is None:
            return
        if self.metric not in metrics:
            raise ValueError(f"hydra.sweeper.epoch_metric={self.metric!r} is not one of this run's per-epoch "
                             f"metrics; choose one of {', '.join(metrics)}")
        value = float(metrics[self.metric])
        study = optuna.load_study(study_name=self.study, storage=self.storage, pruner=pruner(self.pruner,
                                                                                             self.pruner_args))
        # Optuna's Trial(study, trial_id) is the handle its ask() returns; the id is the storage's key of the number
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
        trial = optuna.trial.Trial(study, trial_id)
        trial.report(value, epoch)
        if trial.should_prune():
            raise Pruned(epoch, self.metric, value)
