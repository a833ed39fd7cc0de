"""The selection interface: how a gradient search's final genotype is chosen from its supernet and history.

``darts.runs.search.SearchRun`` calls, after each epoch but the last, ``selection.stop(history)`` (a rule that ends
the search early and names the epoch whose genotype it returns), and after the last epoch
``selection.select(strategy, space, context, record)``, whose genotype the run reports. A
selection never changes the search itself; a long phase (DARTS-PT) is redone from the last epoch's checkpoint when a
run is resumed.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from darts.strategies.base import SearchContext, Strategy
from search_spaces.base import SearchSpace

Record = Callable[[dict[str, Any]], None]  # logs one decision (the run writes it to selection.jsonl and TensorBoard)


@dataclass(frozen=True)
class EarlyStop:
    """A stopping rule's decision: stop after epoch ``decided_at`` and report epoch ``epoch``'s genotype.

    Args:
        epoch: the epoch whose genotype (and metrics) the run reports.
        decided_at: the last epoch the search ran.
        ratio: the value the rule compared with its threshold.
    """

    epoch: int
    decided_at: int
    ratio: float


class Selection(ABC):
    """Chooses the genotype a gradient search reports.

    ``name`` is its option in ``conf/selection/``; ``gradient_only`` that it needs a gradient search (a supernet or
    its eigenvalues), so a discrete run refuses it; ``distributed`` that it runs with several ranks.
    """

    name: ClassVar[str]
    gradient_only: ClassVar[bool] = True
    distributed: ClassVar[bool] = True

    def stop(self, history: Sequence[Mapping[str, Any]]) -> EarlyStop | None:
        """After an epoch (not the last): stop the search now? ``history`` is the run's ``genotypes.jsonl`` records,
        one per epoch so far. Default: never."""
        return None

    @abstractmethod
    def select(self, strategy: Strategy, space: SearchSpace, context: SearchContext, record: Record) -> Any:
        """The final genotype of a search that ran all its epochs; ``record`` logs each decision taken."""


class Argmax(Selection):
    """The strategy's own genotype (``strategy.genotype()``: the argmax of its op weights, the DARTS space's top-2
    inputs per node): no selection phase (DARTS, Liu et al., ICLR 2019, sec. 2.4)."""

    name = "argmax"
    gradient_only = False

    def select(self, strategy: Strategy, space: SearchSpace, context: SearchContext, record: Record) -> Any:
        """``strategy.genotype()``."""
        return strategy.genotype()
