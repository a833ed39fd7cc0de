"""The sweepers: each batch of trials the study asks for (``darts.tuning.study``) is launched as Hydra jobs by the
configured launcher (basic, joblib, submitit), one run directory per trial named by its number and settings, and each
trial's outcome, read from its ``result.json`` (or the task's returned numbers), is told to the study. ``study.json``
beside the trials holds the best trials (the Pareto front of several objectives) after each batch."""
from __future__ import annotations

import json
import logging
import math
import sys
from abc import abstractmethod
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.darts_sweepers.overrides import parse, quoted, value

log = logging.getLogger(__name__)
STUDY_JSON = "study.json"
DEFAULT_OBJECTIVE = {"valid_acc": "maximize"}  # a search's result.json: the validation accuracy of its last epoch


class DartsSweeper(Sweeper):
    """A sweep as a study (see the module docstring); subclasses say how settings are proposed (``proposer``)."""

    def __init__(self, **settings: Any):
        self.settings = {k: OmegaConf.to_container(v) if isinstance(v, DictConfig) else v for k, v in settings.items()}
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep the configuration and build the configured launcher."""
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    @abstractmethod
    def proposer(self, space: dict, budget: int) -> Any:
        """What proposes the settings (``darts.tuning.study.OptunaProposer`` or ``NevergradProposer``)."""

    def pruning(self) -> tuple[str | None, dict[str, Any], str | None]:
        """The pruner's name, its arguments and the per-epoch metric (none without pruning)."""
        return None, {}, None

    def sweep(self, arguments: list[str]) -> dict[str, Any]:
        """Run the study to its ``n_trials``; a bad setting (a sampler, a space, an objective) ends the process with
        one line naming it and the valid choices."""
        try:
            return self._sweep(arguments)
        except ValueError as err:
            message = " ".join(f"ValueError: {err}".split())
            log.error(message)
            sys.exit(message)

    def _sweep(self, arguments: list[str]) -> dict[str, Any]:
        """``sweep`` (see there)."""
        from darts.tuning.algorithms import pruner
        from darts.tuning.study import Objective, Study

        s = self.settings
        for key in ("n_trials", "n_jobs"):
            if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 1:
                raise ValueError(f"hydra.sweeper.{key}={s[key]!r} must be a positive integer")
        space, fixed = parse(arguments, s.get("params") or {})
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()  # resolved once: every trial's parent
        sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = s.get("storage") or f"sqlite:///{sweep_dir / 'study.db'}"
        objectives = [Objective(str(k), str(v)) for k, v in (s.get("objectives") or DEFAULT_OBJECTIVE).items()]
        name, args, metric = self.pruning()
        study = Study(space, objectives, storage, s["study_name"], self.proposer(space, s["n_trials"]),
                      pruner(name, args) if name else None)
        metric = metric or (objectives[0].metric if name else None)  # with a pruner, the objective's by default
        link = {"storage": storage, "study": s["study_name"], "metric": metric, "pruner": name, "pruner_args": args}
        log.info("study %r in %s: %d trials, %d at a time, into %s", s["study_name"], storage, s["n_trials"],
                 s["n_jobs"], sweep_dir)
        while batch := study.batch(s["n_trials"], s["n_jobs"]):
            jobs = [self.overrides(trial, fixed, sweep_dir, link) for trial in batch]
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(batch, returns):
                outcome, values = self.outcome(ret, sweep_dir / trial.name(), objectives)
                study.tell(trial.number, outcome, values)
                log.info("trial %d %s%s: %s", trial.number, outcome, f" {values}" if values else "", trial.params)
            self.record(study, storage, sweep_dir)
        summary = self.record(study, storage, sweep_dir)
        log.info("best trials: %s", [(t["number"], t["values"], t["params"]) for t in summary["best_trials"]])
        return summary

    @staticmethod
    def record(study: Any, storage: str, sweep_dir: Path) -> dict[str, Any]:
        """Write ``study.json`` (the study's summary, its storage and sweep directory) and return it."""
        from darts.runs.directory import write_atomic

        summary = {**study.summary(), "storage": storage, "sweep_dir": str(sweep_dir)}
        write_atomic(sweep_dir / STUDY_JSON, json.dumps(summary, indent=2, default=str) + "\n")
        return summary

    def overrides(self, trial: Any, fixed: list[str], sweep_dir: Path, link: dict[str, Any]) -> list[str]:
        """A trial's job: the fixed overrides, its settings, its run directory, and the study it reports to."""
        from darts.tuning.trial import VARIABLE, TrialLink

        run_dir = sweep_dir / trial.name()
        env = TrialLink(number=trial.number, run_dir=str(run_dir), **link).encode()
        return [*fixed, *(f"{k}={value(v)}" for k, v in trial.params.items()),
                f"hydra.sweep.dir={quoted(str(sweep_dir))}", f"hydra.sweep.subdir={quoted(trial.name())}",
                f"++hydra.job.env_set.{VARIABLE}={quoted(env)}"]

    @staticmethod
    def outcome(ret: JobReturn, run_dir: Path, objectives: list) -> tuple[str, list[float] | None]:
        """A job's outcome: failed (it raised, or wrote no result), pruned (its result.json says so), or complete
        with its objective values (the numbers the task returned, else the metrics of its result.json)."""
        from darts.runs.reader import Run
        from darts.tuning.study import metric_value
        from darts.tuning.trial import PRUNED

        if ret.status != JobStatus.COMPLETED:
            log.warning("trial in %s failed: %s", run_dir, ret._return_value)
            return "failed", None
        returned = ret.return_value
        numbers = [returned] if isinstance(returned, (int, float)) else returned
        if isinstance(numbers, (list, tuple)) and numbers and all(isinstance(x, (int, float)) for x in numbers):
            return "complete", [float(x) for x in numbers]
        run = Run(Path(str(ret.hydra_cfg.hydra.runtime.output_dir)) if ret.hydra_cfg else run_dir, {})
        if not run.finished:
            log.warning("trial in %s wrote no result.json", run.path)
            return "failed", None
        if run.result.get("status") == PRUNED:
            return "pruned", None
        values = [metric_value(run.result, o.metric) for o in objectives]
        return ("complete", values) if all(math.isfinite(v) for v in values) else ("failed", None)


class OptunaSweeper(DartsSweeper):
    """``hydra/sweeper=optuna``: an Optuna sampler proposes, an Optuna pruner may stop trials."""

    def proposer(self, space: dict, budget: int) -> Any:
        """The configured sampler."""
        from darts.tuning.algorithms import sampler
        from darts.tuning.study import OptunaProposer

        s = self.settings
        return OptunaProposer(lambda seed: sampler(s["sampler"], seed, space, s.get("sampler_args")), s.get("seed"))

    def pruning(self) -> tuple[str | None, dict[str, Any], str | None]:
        """The configured pruner, its arguments and epoch metric."""
        from darts.tuning.algorithms import PRUNERS, choose

        name = self.settings.get("pruner")
        if name is not None:
            choose("pruner", name, sorted(PRUNERS))
        return name, self.settings.get("pruner_args") or {}, self.settings.get("epoch_metric")


class NevergradSweeper(DartsSweeper):
    """``hydra/sweeper=nevergrad``: a Nevergrad optimizer proposes."""

    def proposer(self, space: dict, budget: int) -> Any:
        """The configured optimizer, asked ``n_jobs`` at a time."""
        from darts.tuning.study import NevergradProposer

        s = self.settings
        return NevergradProposer(s["optimizer"], space, s.get("seed"), budget, s["n_jobs"])
