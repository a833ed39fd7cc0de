"""The exact, additive cost of the genotypes of a space, and its expectation under a strategy's mixing weights.

A genotype's network is a fixed part (stem, preprocessing, reductions, head) plus one op per used edge of each cell,
and its cost is the fixed part plus the sum of the costs of its chosen ops (each op on each edge of a cell type summed
over the cells of that type). ``CostModel.measure`` counts these parts on built networks of the space: a few probe
genotypes that together place every searched op on every edge, each edge's modules attributed to (cell type, edge,
op), the rest of the network to the fixed part, which must come out the same for every probe. The expected cost
under mixing weights w [E, K] is sum_e sum_k w[e, k] * cost[e, k] plus the fixed part (ProxylessNAS, Cai et al.,
ICLR 2019, eq. 5; FBNet, Wu et al., CVPR 2019, eq. 6), differentiable in whatever produced w.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import torch
import torch.nn as nn

from darts.cost.counting import Count, count
from darts.supernet import Mixing, OpSet

METRICS = ("params", "flops", "latency")
COUNTED_METRICS = ("params", "flops")
UNITS = {"params": 1e6, "flops": 1e6, "latency": 1.0}  # reported in millions, millions and milliseconds
EdgeOp = tuple[str, int, str]  # (cell type, edge, op name)


class CostedSpace(Protocol):
    """What the cost model needs of a search space (``search_spaces.base.SearchSpace`` offers it)."""

    ops: OpSet
    cell_types: tuple[str, ...]

    def cost_probes(self) -> list[Any]: ...

    def edge_ops(self, network: nn.Module, genotype: Any) -> dict[EdgeOp, list[nn.Module]]: ...

    def edge_choices(self, genotype: Any) -> list[EdgeOp]: ...

    def build_network(self, genotype: Any, num_classes: int) -> nn.Module: ...


@dataclass
class Probe:
    """One probe genotype's built network and, per (cell type, edge, op), its modules with their input shapes."""

    genotype: Any
    network: nn.Module
    units: dict[EdgeOp, list[tuple[nn.Module, tuple[int, ...]]]] = field(default_factory=dict)


class LatencyMeter(Protocol):
    """Times the parts of probe networks (``darts.cost.latency``): each edge op's modules, and the fixed part."""

    def edge_latency(self, probe: Probe, key: EdgeOp) -> float: ...

    def fixed_latency(self, probe: Probe) -> float: ...


def check_metric(metric: str) -> str:
    """``metric`` if it is one of ``METRICS``, else a one-line ValueError."""
    if metric not in METRICS:
        raise ValueError(f"cost metric {metric!r} is not valid; choose one of {', '.join(METRICS)}")
    return metric


class CostModel:
    """Per metric, the fixed part and, per cell type, the [E, K] cost of each searched op on each edge (raw units:
    parameters, multiply-accumulates, milliseconds), float64.

    Args:
        ops: the searched ops (columns of the tables).
        tables: metric -> cell type -> [E, K] cost.
        fixed: metric -> the fixed part's cost.
        edge_choices: the (cell type, edge, op) of each op a genotype uses (the space's ``edge_choices``).
    """

    def __init__(self, ops: OpSet, tables: Mapping[str, Mapping[str, torch.Tensor]], fixed: Mapping[str, float],
                 edge_choices: Any):
        self.ops, self.tables, self.fixed, self._choices = ops, dict(tables), dict(fixed), edge_choices

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this model has (``latency`` only with a latency table)."""
        return tuple(m for m in METRICS if m in self.tables)

    def _table(self, metric: str) -> Mapping[str, torch.Tensor]:
        check_metric(metric)
        if metric not in self.tables:
            raise ValueError(f"cost metric {metric!r} needs a latency table: build one with darts-latency "
                             f"(python -m darts.app.latency); this model has {', '.join(self.metrics)}")
        return self.tables[metric]

    def raw(self, genotype: Any, metric: str) -> float:
        """The genotype's cost in raw units: the fixed part plus its chosen ops' costs."""
        table = self._table(metric)
        total = self.fixed[metric]
        for t, e, op in self._choices(genotype):
            total += float(table[t][e, self.ops.names(t, e).index(op)])
        return total

    def cost(self, genotype: Any) -> dict[str, float]:
        """Every metric of the genotype in reported units (params and FLOPs in millions, latency in ms)."""
        return {m: self.raw(genotype, m) / UNITS[m] for m in self.metrics}

    def expected(self, mixing: Mapping[str, Mixing], metric: str) -> torch.Tensor:
        """The expected cost in reported units under mixing weights: fixed + sum_t sum_e s_e sum_k w[e, k] c[e, k],
        with s_e the edge weights (PC-DARTS's betas) where the mixing has them; a hard index without weights
        (a random path) counts its op. A scalar tensor, differentiable in the weights."""
        table = self._table(metric)
        total = None
        for t, m in mixing.items():
            c = table[t]  # [E, K]
            if m.weights is None:
                w = torch.zeros_like(c)
                for e, k in enumerate(m.index):
                    if k is not None:
                        w[e, k] = 1.0
            else:
                w = m.weights
            per_edge = (w * c.to(w.device, w.dtype)).sum(-1)  # [E]
            if m.edge_weights is not None:
                per_edge = per_edge * m.edge_weights.to(per_edge.dtype)
            total = per_edge.sum() if total is None else total + per_edge.sum()
        return (total + self.fixed[metric]) / UNITS[metric]

    @classmethod
    def measure(cls, space: CostedSpace, num_classes: int = 10, input_size: int = 32,
                latency: LatencyMeter | None = None) -> CostModel:
        """Count the space's probe networks (and time them with ``latency``): the tables and the fixed part.
        ValueError if the fixed part differs between probes (the space's cost would not be additive)."""
        ops = space.ops
        tables = {m: {t: torch.zeros(ops.num_edges, ops.k, dtype=torch.float64) for t in space.cell_types}
                  for m in (*COUNTED_METRICS, *(("latency",) if latency is not None else ()))}
        fixed: dict[str, float] = {}
        for probe in probes(space, num_classes, input_size):
            total, parts = count(probe.network, _image(input_size), {k: [m for m, _ in v] for k, v in probe.units.items()})
            rest = total - sum(parts.values(), Count())
            values = {"params": {k: c.params for k, c in parts.items()}, "flops": {k: c.flops for k, c in parts.items()}}
            rests = {"params": rest.params, "flops": rest.flops}
            if latency is not None:
                values["latency"] = {k: latency.edge_latency(probe, k) for k in probe.units}
                rests["latency"] = latency.fixed_latency(probe)
            for metric, per_key in values.items():
                _fill(tables[metric], ops, per_key, metric)
                _agree(fixed, metric, float(rests[metric]), probe.genotype)
        return cls(ops, tables, fixed, space.edge_choices)


def _image(input_size: int) -> torch.Tensor:
    """One blank image (1, 3, S, S): costs do not depend on pixel values."""
    return torch.zeros(1, 3, input_size, input_size)


def probes(space: CostedSpace, num_classes: int, input_size: int) -> list[Probe]:
    """The space's probe networks (eval mode, CPU) with each edge op's modules and their input shapes."""
    out = []
    for genotype in space.cost_probes():
        network = space.build_network(genotype, num_classes).eval()
        probe = Probe(genotype, network)
        groups = space.edge_ops(network, genotype)
        shapes: dict[nn.Module, tuple[int, ...]] = {}

        def note(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(module, tuple(args[0].shape))

        handles = [m.register_forward_pre_hook(note) for modules in groups.values() for m in modules]
        with torch.no_grad():
            network(_image(input_size))
        for h in handles:
            h.remove()
        probe.units = {k: [(m, shapes[m]) for m in modules if m in shapes] for k, modules in groups.items()}
        out.append(probe)
    return out


def _fill(table: dict[str, torch.Tensor], ops: OpSet, values: Mapping[EdgeOp, float], metric: str) -> None:
    """Enter each (cell type, edge, op)'s value; ValueError if a probe measured a different value before."""
    for (t, e, op), value in values.items():
        k = ops.names(t, e).index(op)
        old = float(table[t][e, k])
        if old and old != value:
            raise ValueError(f"{metric} of {op} on {t} edge {e} differs between probes: {old} and {value}")
        table[t][e, k] = value


def _agree(fixed: dict[str, float], metric: str, value: float, genotype: Any) -> None:
    """Keep the fixed part; ValueError if a probe's differs (the space's cost is then not additive)."""
    if fixed.setdefault(metric, value) != value:
        raise ValueError(f"the fixed part's {metric} differs between probe genotypes ({fixed[metric]} and {value} "
                         f"for {genotype}): the space's cost is not additive")

