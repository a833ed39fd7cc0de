"""A partly discretised supernet: DARTS-PT's decisions so far, applied to whatever mixing a strategy computes.

Each decided edge runs its chosen op alone, at weight 1; each edge removed from a node runs nothing (weight 0);
every other edge keeps the strategy's weights (ruocwang/darts-pt sota/cnn/model_search_darts_proj.py
``get_projected_weights``). ``applied`` installs the decisions on the supernet's forward, so that any strategy's
arch and weight steps train the projected supernet without knowing it.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.supernet import Mixing


class Projection:
    """The op fixed on each decided edge and the edges removed, per cell type.

    Args:
        cell_types: the supernet's cell types.
        num_edges, num_ops: E and K of its [E, K] mixing weights.
        device: where the fixed weights live (the arch parameters' device).
    """

    def __init__(self, cell_types: Sequence[str], num_edges: int, num_ops: int, device: torch.device):
        self.num_ops, self.device = num_ops, device
        self.ops: dict[str, list[int | None]] = {t: [None] * num_edges for t in cell_types}
        self.removed: dict[str, set[int]] = {t: set() for t in cell_types}
        self._fixed: dict[str, torch.Tensor] = {}  # [E, K]: one-hot rows of decided edges, zero rows of removed ones
        self._mask: dict[str, torch.Tensor] = {}  # [E]: decided or removed
        for t in cell_types:
            self._rebuild(t)

    def undecided(self, cell_type: str) -> list[int]:
        """The edges of ``cell_type`` without an op yet."""
        return [e for e, k in enumerate(self.ops[cell_type]) if k is None]

    def fix_op(self, cell_type: str, edge: int, op: int) -> None:
        """Discretise ``edge`` to op index ``op``."""
        self.ops[cell_type][edge] = op
        self._rebuild(cell_type)

    def remove_edges(self, cell_type: str, edges: Sequence[int]) -> None:
        """Remove ``edges`` (already discretised) from the cell."""
        if any(self.ops[cell_type][e] is None for e in edges):
            raise ValueError(f"edges {list(edges)} of the {cell_type} cell must have an op before they are removed")
        self.removed[cell_type].update(edges)
        self._rebuild(cell_type)

    def _rebuild(self, cell_type: str) -> None:
        ops = self.ops[cell_type]
        fixed = torch.zeros(len(ops), self.num_ops, device=self.device)  # [E, K]
        for e, k in enumerate(ops):
            if k is not None and e not in self.removed[cell_type]:
                fixed[e, k] = 1.0
        self._fixed[cell_type] = fixed
        self._mask[cell_type] = torch.tensor([k is not None for k in ops], device=self.device)  # [E]

    def weights(self, cell_type: str, weights: torch.Tensor) -> torch.Tensor:
        """``weights`` [E, K] with the decided rows replaced (no gradient reaches them, as the reference's)."""
        return torch.where(self._mask[cell_type][:, None], self._fixed[cell_type].to(weights.dtype), weights)

    def fixed_weights(self) -> dict[str, torch.Tensor]:
        """Per cell type the [E, K] weights of the decisions alone (a finished projection's genotype derives from
        them: one-hot rows, zero rows for removed edges)."""
        return dict(self._fixed)

    def mixing(self, mixing: dict[str, Mixing]) -> dict[str, Mixing]:
        """The mixing with the decisions applied: decided edges run their op (a hard index points to it) at weight 1,
        unscaled by PC-DARTS's edge weights; removed edges are scaled by 0."""
        out = {}
        for t, m in mixing.items():
            mask = self._mask[t]
            weights = m.weights
            if weights is None:  # a hard index alone: its ops at weight 1
                weights = F.one_hot(torch.as_tensor(list(m.index), device=self.device), self.num_ops).float()
            index = None if m.index is None else [int(i) if k is None else k for i, k in zip(m.index, self.ops[t])]
            edges = None if m.edge_weights is None else torch.where(mask, torch.ones_like(m.edge_weights),
                                                                   m.edge_weights)
            out[t] = replace(m, weights=self.weights(t, weights), index=index, edge_weights=edges)
        return out

    @contextmanager
    def applied(self, supernet: nn.Module) -> Iterator[None]:
        """Within it, every forward of ``supernet(x, mixing)`` runs with ``self.mixing(mixing)``."""
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if len(args) > 1:
                return (args[0], self.mixing(args[1]), *args[2:]), kwargs
            if kwargs.get("mixing") is None:
                raise ValueError("a projected supernet needs the strategy's mixing: supernet(x, mixing)")
            return args, {**kwargs, "mixing": self.mixing(kwargs["mixing"])}

        handle = supernet.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
