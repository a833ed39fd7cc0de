"""A search under a budget: a cost metric, its target, and the penalty that brings the expected cost into the arch
objective (``darts.cost.penalty``).

The search run binds the budget to the space's cost model (``darts.cost.model.CostModel``); the strategy then adds the
penalty to its arch loss on the same mixing weights its forward pass used (``Strategy.arch_loss``), and after each
arch step the budget sees the exact cost of the derived genotype (LightNAS's multiplier follows it).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from darts.cost.latency import KeyedSpace, cost_model
from darts.cost.model import UNITS, CostModel, check_metric
from darts.cost.penalty import Penalty
from darts.settings import number
from darts.supernet import Mixing


class Budget:
    """``metric`` (params | flops | latency) with a ``target`` (millions of parameters, millions of multiply-
    accumulates, or milliseconds) enforced by ``penalty``.

    Args:
        metric: the cost metric.
        target: the target cost in reported units (> 0).
        penalty: builds the penalty from the target: ``penalty(target=...)`` (a partial from the configuration).
    """

    def __init__(self, metric: str, target: float, penalty: Any):
        self.metric = check_metric(metric)
        number("cost.target", target, 0, low_open=True, unit=f" ({'ms' if metric == 'latency' else 'millions'})")
        self.target = float(target)
        self.penalty: Penalty = penalty(target=self.target)
        self.model: CostModel | None = None
        self.derived = float("nan")  # the exact cost of the genotype derived after the last arch step

    def bind(self, model: CostModel) -> None:
        """Use the space's cost model; ValueError if it lacks the metric (latency without a latency table)."""
        if self.metric not in model.metrics:
            raise ValueError(f"cost.metric={self.metric} needs latency_table=<file>, a darts-latency table of the "
                             "search's space (docs/latency.md)")
        self.model = model

    def expected(self, mixing: Mapping[str, Mixing]) -> torch.Tensor:
        """The expected cost under ``mixing`` (reported units), differentiable in its weights."""
        if self.model is None:
            raise RuntimeError("the budget is not bound to a cost model (Budget.bind)")
        return self.model.expected(mixing, self.metric)

    def penalise(self, loss: torch.Tensor, mixing: Mapping[str, Mixing]) -> torch.Tensor:
        """The arch objective with the cost of ``mixing`` brought in by the penalty."""
        return self.penalty(loss, self.expected(mixing))

    def observe(self, genotype: Any) -> None:
        """After an arch step: the derived genotype's exact cost, which the penalty may follow (LightNAS)."""
        self.derived = self.model.raw(genotype, self.metric) / UNITS[self.metric]
        self.penalty.observe(self.derived)

    def meets(self, genotype: Any) -> bool:
        """Whether the genotype's exact cost is within the target."""
        return self.model.raw(genotype, self.metric) / UNITS[self.metric] <= self.target

    def scalars(self) -> dict[str, float]:
        """The derived genotype's cost, the target and the penalty's state (e.g. LightNAS's multiplier)."""
        return {f"derived_{self.metric}": self.derived, f"target_{self.metric}": self.target,
                **self.penalty.scalars()}

    def state_dict(self) -> dict[str, Any]:
        """The penalty's state (LightNAS's multiplier)."""
        return {"penalty": self.penalty.state_dict(), "derived": self.derived}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        self.penalty.load_state_dict(state["penalty"])
        self.derived = state["derived"]


def costs(space: KeyedSpace, num_classes: int, input_size: int, budget: Budget | None,
          latency_table: str | None) -> CostModel | None:
    """A search's cost model: the space's bound to ``budget`` (None in a space without one, unless a budget or a
    latency table asks for it: then the space's one-line error)."""
    if not space.costed and budget is None and latency_table is None:
        return None
    model = cost_model(space, num_classes, input_size, latency_table)
    if budget is not None:
        budget.bind(model)
    return model
