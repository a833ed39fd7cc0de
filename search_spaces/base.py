"""The interface every search space implements: its networks and genotypes, no search algorithm."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn as nn

from darts.diagrams import CellGraph
from darts.context import Context
from darts.supernet import Mixing, OpSet, Supernet, SupernetOptions


class SearchSpace(ABC):
    """Primitives, edges and cell types of a space; builds its networks and handles its genotypes.

    Strategies, evaluators and runs talk to a space only through this interface, so they never know
    which space they search. Genotypes are the space's own immutable value type. A space is a package
    under ``search_spaces/`` (its ops, genotype, supernet, networks, published cells) plus
    ``conf/search_space/<name>.yaml`` and its retraining recipe ``conf/recipe/<name>.yaml``.
    """

    primitives: tuple[str, ...]
    cell_types: tuple[str, ...]
    num_edges: int
    costed: bool = False  # whether the space has a cost model (``cost_probes``, ``edge_ops``, ``edge_choices``)

    @property
    def ops(self) -> OpSet:
        """The searched ops of every edge; default: ``primitives`` on every edge of every cell type."""
        return OpSet.uniform(self.cell_types, self.num_edges, self.primitives)

    @property
    def choices(self) -> int:
        """Values of one edge in ``op_indices``: its K ops, plus "unused" (index K) where a space can leave an edge
        out of a genotype without a `none` op to show it."""
        return self.ops.k

    def build_supernet(self, num_classes: int, context: Context = Context(),
                       options: SupernetOptions = SupernetOptions()) -> Supernet:
        """The weight-sharing supernet with what a strategy asks of it (``options``), built with ``context``
        (precision, memory format, fast path) and placed by it."""
        return context.place(self.make_supernet(num_classes, context, options))

    @abstractmethod
    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> Supernet:
        """A new supernet (mixed ops on every edge as ``options`` asks, ``context.fast``), on the CPU."""

    @abstractmethod
    def network_sizes(self) -> dict[str, int]:
        """The size keywords of the space's discrete networks at this space's size (e.g. ``{"C": 36, "layers": 20}``
        for NetworkCIFAR), for the retraining recipe's network class."""

    @abstractmethod
    def build_network(self, genotype: Any, num_classes: int) -> nn.Module:
        """The discrete network of one genotype at the space's size; forward returns logits."""

    @abstractmethod
    def derive(self, weights: dict[str, torch.Tensor]) -> Any:
        """The genotype of per-cell-type op weights [E, K] (probabilities, not raw alphas)."""

    @abstractmethod
    def to_text(self, genotype: Any) -> str:
        """The space's canonical text form of a genotype."""

    @abstractmethod
    def parse(self, text: str) -> Any:
        """Parse the text form (never eval); ValueError when malformed."""

    @abstractmethod
    def to_json(self, genotype: Any) -> dict:
        """A JSON-serialisable form of a genotype."""

    @abstractmethod
    def from_json(self, data: Any) -> Any:
        """The genotype of a ``to_json`` form; ValueError when malformed."""

    @abstractmethod
    def sample(self, generator: torch.Generator) -> Any:
        """A uniformly random genotype of the kind ``derive`` returns."""

    @abstractmethod
    def mutate(self, genotype: Any, generator: torch.Generator) -> Any:
        """A valid genotype differing from ``genotype`` in exactly one place."""

    @abstractmethod
    def cell_graphs(self, genotype: Any) -> dict[str, CellGraph]:
        """Each cell type of ``genotype`` as a graph to draw (``darts.diagrams``): inputs, nodes, labelled edges."""

    @abstractmethod
    def one_hot(self, genotype: Any) -> dict[str, Mixing]:
        """Hard mixing (an op index per edge) that runs ``genotype`` inside the supernet."""

    def encode(self, genotype: Any) -> torch.Tensor:
        """A 1-D float encoding for predictors: the one-hot op of every edge of every cell type (``one_hot``'s indices,
        cell types in ``cell_types`` order), the adjacency one-hot encoding of White et al., "A Study on Encodings
        for Neural Architecture Search" (NeurIPS 2020), sec. 3. [len(cell_types) * num_edges * choices]"""
        return torch.nn.functional.one_hot(self.op_indices(genotype), self.choices).flatten().float()

    def op_indices(self, genotype: Any) -> torch.Tensor:
        """The op index of every edge of every cell type (``one_hot``'s; K for an unused edge), cell types in
        ``cell_types`` order. [C, E]"""
        mixing = self.one_hot(genotype)
        k = self.ops.k
        return torch.tensor([[k if i is None else i for i in mixing[t].index] for t in self.cell_types])

    def cost_probes(self) -> list[Any]:
        """Genotypes whose networks together hold every searched op (but `none`) on every edge of every cell type, for
        the cost model (``darts.cost.model``); a space without one says so."""
        raise ValueError(f"{type(self).__name__} has no cost model (cost probes); the NB201 and DARTS spaces have one")

    def edge_ops(self, network: nn.Module, genotype: Any) -> dict[tuple[str, int, str], list[nn.Module]]:
        """The modules of each (cell type, edge, op) of ``genotype`` in its built ``network``, over all its cells."""
        raise ValueError(f"{type(self).__name__} has no cost model (edge ops)")

    def edge_choices(self, genotype: Any) -> list[tuple[str, int, str]]:
        """The (cell type, edge, op) of each op ``genotype`` uses, once per use (`none` left out)."""
        raise ValueError(f"{type(self).__name__} has no cost model (edge choices)")

    def input_choices(self) -> tuple[tuple[tuple[int, ...], int], ...]:
        """The nodes whose genotype keeps only some of their input edges: (those edges, how many are kept) for each.
        Default: none (a genotype keeps every edge, as in NB201)."""
        return ()


def randint(generator: torch.Generator, high: int) -> int:
    """A uniform integer in [0, high) from a seeded CPU generator."""
    return int(torch.randint(high, (1,), generator=generator))
