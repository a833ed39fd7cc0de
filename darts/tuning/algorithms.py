"""The proposal and pruning algorithms a study is built with, by name: Optuna's samplers and pruners and Nevergrad's
optimizers. A bad name is a ValueError naming it and the valid ones."""
from __future__ import annotations

from typing import Any, Callable

from darts.tuning.space import Param, grid_values


def _optuna_sampler(name: str) -> Callable[..., Any]:
    """A factory ``(seed, space, **kwargs)`` of the Optuna sampler class ``name``."""
    def make(seed: int | None, space: dict[str, Param], **kwargs: Any) -> Any:
        import optuna

        return getattr(optuna.samplers, name)(seed=seed, **kwargs)
    return make


def _grid(seed: int | None, space: dict[str, Param], **kwargs: Any) -> Any:
    """Optuna's ``GridSampler`` over every value of every setting (``grid_values``)."""
    import optuna

    return optuna.samplers.GridSampler({k: grid_values(k, p) for k, p in space.items()}, seed=seed, **kwargs)


# Optuna's samplers (optuna.readthedocs.io, "optuna.samplers"): gp is Bayesian optimisation with a Gaussian process
SAMPLERS: dict[str, Callable[..., Any]] = {
    "tpe": _optuna_sampler("TPESampler"), "gp": _optuna_sampler("GPSampler"),
    "cmaes": _optuna_sampler("CmaEsSampler"), "nsgaii": _optuna_sampler("NSGAIISampler"),
    "nsgaiii": _optuna_sampler("NSGAIIISampler"), "qmc": _optuna_sampler("QMCSampler"),
    "random": _optuna_sampler("RandomSampler"), "grid": _grid,
}
PRUNERS = {"median": "MedianPruner", "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}


def choose(kind: str, name: str, choices: list[str]) -> str:
    """``name`` if it is one of ``choices``, else a ValueError naming it and them."""
    if name not in choices:
        raise ValueError(f"{kind}={name!r} is not valid; choose one of {', '.join(choices)}")
    return name


def sampler(name: str, seed: int | None, space: dict[str, Param], kwargs: dict[str, Any] | None = None) -> Any:
    """The Optuna sampler ``name`` (``SAMPLERS``) seeded with ``seed``, with its own keyword arguments ``kwargs``."""
    return SAMPLERS[choose("sampler", name, sorted(SAMPLERS))](seed, space, **(kwargs or {}))


def pruner(name: str | None, kwargs: dict[str, Any] | None = None) -> Any:
    """The Optuna pruner ``name`` (``PRUNERS``) with ``kwargs``; Optuna's ``NopPruner`` for None (never prune)."""
    import optuna

    if name is None:
        return optuna.pruners.NopPruner()
    return getattr(optuna.pruners, PRUNERS[choose("pruner", name, sorted(PRUNERS))])(**(kwargs or {}))


def nevergrad_optimizer(name: str) -> Any:
    """The Nevergrad optimizer class registered as ``name`` (PSO, CMA, TwoPointsDE, OnePlusOne, NGOpt, ...)."""
    import nevergrad as ng

    registry = ng.optimizers.registry
    if name not in registry:
        common = ["PSO", "CMA", "TwoPointsDE", "OnePlusOne", "NGOpt"]
        raise ValueError(f"optimizer={name!r} is not a registered Nevergrad optimizer; choose one of "
                         f"{', '.join(common)} or another of the {len(registry)} in nevergrad.optimizers.registry")
    return registry[name]
