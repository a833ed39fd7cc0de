"""A tuning study kept in a database (any SQLAlchemy URL; SQLite by default), driven by ask/tell: an Optuna sampler or
a Nevergrad optimizer proposes settings, the study records every trial, its per-epoch values and its outcome.

Resuming is reopening the same storage and study name: finished trials are kept (a Nevergrad optimizer is told them
again), a trial left running by an interrupted sweep is run again under its own number and settings, and new trials
are asked only up to the configured total, so an interrupted sweep loses and repeats no trial.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

from darts.tuning.algorithms import choose, nevergrad_optimizer
from darts.tuning.space import Param, check, format_value, nevergrad_parameter, optuna_distribution

log = logging.getLogger(__name__)
DIRECTIONS = ["maximize", "minimize"]
OUTCOMES = ("complete", "pruned", "failed")
NESTED = ("benchmark", "cost")  # result.json groups whose entries are named on their own (cifar10_valid_12ep, params)


@dataclass(frozen=True)
class Objective:
    """A metric of a run's ``result.json`` (``metric_value``) and whether to ``maximize`` or ``minimize`` it."""

    metric: str
    direction: str

    def __post_init__(self) -> None:
        choose(f"direction of {self.metric}", self.direction, DIRECTIONS)


@dataclass(frozen=True)
class Asked:
    """A trial to run: its number in the study and its settings."""

    number: int
    params: dict[str, Any]

    def name(self) -> str:
        """Its run directory's name: ``trial=<number>`` and its settings (``/`` kept out, at most 240 characters)."""
        text = ",".join([f"trial={self.number}", *(f"{k}={format_value(v)}" for k, v in self.params.items())])
        return text.replace("/", "|")[:240]


def metric_value(result: dict[str, Any], name: str) -> float:
    """``name`` in a run's result: a key (``valid_acc``), a dotted path (``benchmark.cifar10_test_200ep``), or a
    benchmark column or cost metric by its own name (``cifar10_valid_12ep``, ``params``); ValueError naming the
    metrics the result has."""
    node: Any = result
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None and "." not in name:
        node = next((result[g][name] for g in NESTED if isinstance(result.get(g), dict) and name in result[g]), None)
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return float(node)
    known = [k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    known += [f"{g}.{k}" for g in NESTED if isinstance(result.get(g), dict) for k in result[g]]
    raise ValueError(f"objective {name!r} is not a number of the run's result.json; choose one of {', '.join(known)}")


def resumed_seed(seed: int | None, trials: int) -> int | None:
    """The seed of a sampler reopened on a study of ``trials`` trials: another stream than the first run's (the same
    seed would propose the first run's settings again), and the same on every rerun of the same state."""
    return None if seed is None else (seed * 1_000_003 + trials) % 2**32


class OptunaProposer:
    """Proposals from an Optuna sampler, built by ``make(seed)``, which reads the study itself (nothing to tell or
    replay)."""

    def __init__(self, make: Callable[[int | None], Any], seed: int | None):
        self.make, self.seed = make, seed
        self.sampler = make(seed)

    def resume(self, trials: int) -> None:
        """Reseed for a study reopened with ``trials`` trials (``resumed_seed``)."""
        self.sampler = self.make(resumed_seed(self.seed, trials))

    def ask(self, study: Any, distributions: dict[str, Any]) -> Asked:
        """A new trial of ``study`` with the sampler's settings."""
        trial = study.ask(distributions)
        return Asked(trial.number, dict(trial.params))

    def tell(self, number: int, losses: list[float]) -> None:
        """Nothing: the sampler reads the study."""

    def replay(self, trials: list[Any], objectives: list[Objective]) -> None:
        """Nothing: the sampler reads the study."""


class NevergradProposer:
    """Proposals from a Nevergrad optimizer (``name`` in its registry) over ``space``, seeded with ``seed``, asked
    ``workers`` at a time within ``budget``; each is recorded in the study as an enqueued trial."""

    def __init__(self, name: str, space: dict[str, Param], seed: int | None, budget: int, workers: int):
        import nevergrad as ng
        import numpy as np
        import optuna

        parametrization = ng.p.Instrumentation(**{k: nevergrad_parameter(p) for k, p in space.items()})
        parametrization.random_state = np.random.RandomState(seed)
        self.optimizer = nevergrad_optimizer(name)(parametrization=parametrization, budget=budget,
                                                   num_workers=workers)
        self.sampler = optuna.samplers.RandomSampler(seed=seed)  # never used: every trial's settings are enqueued
        self.candidates: dict[int, Any] = {}
        self.seed = seed

    def resume(self, trials: int) -> None:
        """Reseed for a study reopened with ``trials`` trials, after ``replay`` (``resumed_seed``)."""
        import numpy as np

        self.optimizer.parametrization.random_state = np.random.RandomState(resumed_seed(self.seed, trials))

    def ask(self, study: Any, distributions: dict[str, Any]) -> Asked:
        """The optimizer's next candidate, recorded as a new trial of ``study``."""
        candidate = self.optimizer.ask()
        study.enqueue_trial(dict(candidate.kwargs))
        trial = study.ask(distributions)
        self.candidates[trial.number] = candidate
        return Asked(trial.number, dict(trial.params))

    def tell(self, number: int, losses: list[float]) -> None:
        """Tell the optimizer the losses (minimised) of trial ``number``'s candidate."""
        candidate = self.candidates.pop(number, None)
        if candidate is not None:
            self.optimizer.tell(candidate, losses[0] if len(losses) == 1 else losses)

    def replay(self, trials: list[Any], objectives: list[Objective]) -> None:
        """Tell the optimizer a resumed study's finished trials, in order, as if it had asked them."""
        for trial in sorted(trials, key=lambda t: t.number):
            self.optimizer.suggest(**trial.params)
            candidate = self.optimizer.ask()
            self.optimizer.tell(candidate, _losses(trial.values, objectives))


def _losses(values: list[float] | None, objectives: list[Objective]) -> list[float] | float:
    """Values as losses to minimise (a trial without values, pruned or failed: the worst, infinity)."""
    if values is None:
        losses = [math.inf] * len(objectives)
    else:
        losses = [-v if o.direction == "maximize" else v for v, o in zip(values, objectives)]
    return losses[0] if len(losses) == 1 else losses


class Study:
    """The study ``name`` in ``storage`` (created, or reopened to resume) over ``space`` with ``objectives``; ``proposer``
    proposes settings (``OptunaProposer``, ``NevergradProposer``); ``pruner`` stops trials early (Optuna's; None:
    never)."""

    def __init__(self, space: dict[str, Param], objectives: list[Objective], storage: str, name: str,
                 proposer: OptunaProposer | NevergradProposer, pruner: Any = None):
        import optuna

        if not space:
            raise ValueError("the sweep tunes no setting: give hydra.sweeper.params or key=interval(...) overrides")
        if pruner is not None and len(objectives) > 1:
            raise ValueError("pruning needs a single objective (Optuna prunes no multi-objective study)")
        self.space = {k: check(k, p) for k, p in space.items()}
        self.distributions = {k: optuna_distribution(p) for k, p in self.space.items()}
        self.objectives, self.proposer = objectives, proposer
        self.exhausted = False  # a grid sampler that ran every point
        directions = [o.direction for o in objectives]
        self.study = optuna.create_study(storage=storage, sampler=proposer.sampler, pruner=pruner, study_name=name,
                                         directions=directions, load_if_exists=True)
        stored = [d.name.lower() for d in self.study.directions]
        if stored != directions:
            raise ValueError(f"study {name!r} in {storage} has directions {stored}, not {directions}: give another "
                             "study_name or storage")
        trials = self.study.get_trials(deepcopy=False)
        # an interrupted sweep's running trials: run again, under their own numbers and settings
        self.pending = [Asked(t.number, dict(t.params)) for t in trials if t.state.name == "RUNNING"]
        finished = [t for t in trials if t.state.is_finished()]
        proposer.replay(finished, objectives)
        if trials:
            proposer.resume(len(trials))
            self.study.sampler = proposer.sampler
            log.info("resuming study %r: %d finished trials, %d to run again", name, len(finished), len(self.pending))

    def asked(self) -> int:
        """How many trials the study holds (finished or running)."""
        return sum(t.state.name != "WAITING" for t in self.study.get_trials(deepcopy=False))

    def batch(self, n_trials: int, size: int) -> list[Asked]:
        """Up to ``size`` trials to run now: interrupted ones first, then new ones while the study holds fewer than
        ``n_trials``; none when the study is done."""
        out, self.pending = self.pending[:size], self.pending[size:]
        new = 0 if self.exhausted else min(size - len(out), n_trials - self.asked())
        return out + [self.proposer.ask(self.study, self.distributions) for _ in range(max(new, 0))]

    def tell(self, number: int, outcome: str, values: list[float] | None = None) -> None:
        """Record trial ``number``'s outcome (``complete`` with its objective values, ``pruned`` or ``failed``)."""
        from optuna.trial import TrialState

        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
        try:
            self.study.tell(number, values if outcome == "complete" else None, state=state[outcome])
        except RuntimeError as err:  # GridSampler.after_trial calls Study.stop once every point ran (the trial is
            if "Study.stop" not in str(err):  # stored first), which Optuna allows only inside Study.optimize
                raise
            self.exhausted = True
        self.proposer.tell(number, _as_list(_losses(values if outcome == "complete" else None, self.objectives)))

    def summary(self) -> dict[str, Any]:
        """The study for ``study.json``: objectives, trial counts by state, every trial, and the best trials (a single
        objective's best, or the Pareto front of several)."""
        trials = self.study.get_trials(deepcopy=False)
        record = [{"number": t.number, "state": t.state.name.lower(), "params": t.params, "values": t.values,
                   "run_dir": Asked(t.number, t.params).name()} for t in trials]
        best = {t.number for t in self.study.best_trials} if any(t.state.name == "COMPLETE" for t in trials) else set()
        states: dict[str, int] = {}
        for t in record:
            states[t["state"]] = states.get(t["state"], 0) + 1
        return {"study_name": self.study.study_name,
                "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
                "n_trials": len(trials), "states": states,
                "best_trials": [t for t in record if t["number"] in best], "trials": record}


def _as_list(losses: list[float] | float) -> list[float]:
    """Losses as a list."""
    return losses if isinstance(losses, list) else [losses]
