"""The settings a study tunes: a float or integer interval (optionally log-scaled) or a choice, and their forms for
Optuna (distributions), Nevergrad (parameters) and a grid (the values of each setting)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Float:
    """A real setting in ``[low, high]``, sampled on a log scale if ``log``."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer setting in ``[low, high]`` (both included) by ``step``, sampled on a log scale if ``log``."""

    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (numbers, strings, booleans)."""

    choices: tuple


Param = Union[Float, Int, Choice]


def check(name: str, param: Param) -> Param:
    """``param``, checked: ValueError naming ``name`` and the bad bound or an empty choice."""
    if isinstance(param, Choice):
        if not param.choices:
            raise ValueError(f"{name}: choice() needs at least one value")
        return param
    if not param.low < param.high:
        raise ValueError(f"{name}: the interval's low ({param.low}) must be below its high ({param.high})")
    if param.log and param.low <= 0:
        raise ValueError(f"{name}: a log scale needs a positive low bound, not {param.low}")
    if isinstance(param, Int) and (param.step < 1 or param.log and param.step != 1):
        raise ValueError(f"{name}: an integer step must be >= 1 (and 1 on a log scale), not {param.step}")
    return param


def optuna_distribution(param: Param) -> Any:
    """Optuna's distribution of ``param`` (``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, Float):
        return FloatDistribution(param.low, param.high, log=param.log)
    if isinstance(param, Int):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(list(param.choices))


def nevergrad_parameter(param: Param) -> Any:
    """Nevergrad's parameter of ``param``: a bounded ``Scalar`` (``Log`` on a log scale; cast to int for ``Int``) or
    a ``Choice``, as Hydra's Nevergrad sweeper builds them (hydra_plugins/hydra_nevergrad_sweeper/_impl.py)."""
    import nevergrad as ng

    if isinstance(param, Choice):
        return ng.p.Choice(list(param.choices))
    scalar = (ng.p.Log(lower=param.low, upper=param.high) if param.log
              else ng.p.Scalar(lower=param.low, upper=param.high))
    return scalar.set_integer_casting() if isinstance(param, Int) else scalar


def grid_values(name: str, param: Param) -> list:
    """The values a grid tries for ``param``: the choices, or every ``step``-th integer; ValueError for a real
    interval (a grid needs finitely many values: give choice(...) or range(...))."""
    if isinstance(param, Choice):
        return list(param.choices)
    if isinstance(param, Int) and not param.log:
        return list(range(param.low, param.high + 1, param.step))
    raise ValueError(f"{name}: the grid sampler needs finitely many values: give choice(...) or range(...), "
                     f"not an interval")


def format_value(value: Any) -> str:
    """A value for a run directory's name: a float to 4 significant digits, anything else as written."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)
