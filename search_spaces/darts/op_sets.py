"""The op sets searched in the DARTS cell, by name, and how a config value becomes one (``op_set``).

- ``darts``: the 8 ops of DARTS cnn/genotypes.py ``PRIMITIVES``, `none` included (Liu et al., ICLR 2019, sec. 3.1.1).
- ``s5``: the same without `none`, 7 ops: the DARTS space as the robustness papers search it (SmoothDARTS, Chen &
  Hsieh, ICML 2020; DARTS-PT, Wang et al., ICLR 2021; beta-DARTS, Ye et al., CVPR 2022: `sota/cnn/spaces.py`
  ``PRIMITIVES`` with 'none' commented out, ``spaces_dict['s5']``).
- ``s1`` to ``s4``: the RobustDARTS spaces (Zela et al., ICLR 2020, sec. 3; automl/RobustDARTS src/spaces.py
  ``primitives_1`` .. ``primitives_4``, the same lists in SmoothDARTS `sota/cnn/spaces.py`). S1 gives each edge of
  each cell type its own pair of ops (the ops the one-shot model ranked highest in their DARTS runs); S2 searches
  {skip_connect, sep_conv_3x3}, S3 {none, skip_connect, sep_conv_3x3} and S4 {noise, sep_conv_3x3} on every edge.
"""
from __future__ import annotations

from typing import Any, Sequence

from darts.supernet import OpSet
from search_spaces.darts.ops import OPS, PRIMITIVES

CELL_TYPES = ("normal", "reduce")
NUM_EDGES = 14  # 2 + 3 + 4 + 5: each of the cell's 4 intermediate nodes takes every earlier state

_S1_NORMAL = (  # src/spaces.py primitives_1['primitives_normal'], edge by edge (DARTS edge order)
    ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"), ("max_pool_3x3", "skip_connect"), ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"),
)
_S1_REDUCE = (  # src/spaces.py primitives_1['primitives_reduct']
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "dil_conv_3x3"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
)


def _uniform(names: Sequence[str]) -> OpSet:
    """The same ops on every edge of both cell types."""
    return OpSet.uniform(CELL_TYPES, NUM_EDGES, names)


OP_SETS: dict[str, OpSet] = {
    "darts": _uniform(PRIMITIVES),
    "s5": _uniform(PRIMITIVES[1:]),
    "s1": OpSet({"normal": _S1_NORMAL, "reduce": _S1_REDUCE}),
    "s2": _uniform(("skip_connect", "sep_conv_3x3")),
    "s3": _uniform(("none", "skip_connect", "sep_conv_3x3")),
    "s4": _uniform(("noise", "sep_conv_3x3")),
}


def _cell(cell_type: str, value: Any) -> tuple[tuple[str, ...], ...]:
    """One cell type's edges: a list of op names (every edge) or 14 such lists (one per edge)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"search_space.ops.{cell_type} must be a list of op names or {NUM_EDGES} such lists, "
                         f"got {value!r}")
    if all(isinstance(name, str) for name in value):
        return (tuple(value),) * NUM_EDGES
    if len(value) != NUM_EDGES or not all(isinstance(row, Sequence) and not isinstance(row, str) for row in value):
        raise ValueError(f"search_space.ops.{cell_type} lists {len(value)} edges; the DARTS cell has {NUM_EDGES}")
    return tuple(tuple(row) for row in value)


def op_set(value: str | Sequence[str] | dict[str, Any]) -> OpSet:
    """The op set a config names: a set of ``OP_SETS`` by name, a list of op names searched on every edge, or
    ``{normal: ..., reduce: ...}`` with a list (every edge) or 14 lists (one per edge) for each cell type."""
    if isinstance(value, str):
        if value not in OP_SETS:
            raise ValueError(f"search_space.ops={value!r} is not a named op set; valid: {', '.join(OP_SETS)} "
                             f"(or a list of op names)")
        ops = OP_SETS[value]
    elif hasattr(value, "keys"):
        if set(value.keys()) != set(CELL_TYPES):
            raise ValueError(f"search_space.ops needs exactly the cell types {', '.join(CELL_TYPES)}, got "
                             f"{', '.join(map(str, value.keys()))}")
        ops = OpSet({t: _cell(t, value[t]) for t in CELL_TYPES})
    else:
        ops = OpSet({t: _cell(t, value) for t in CELL_TYPES})
    _check(ops)
    return ops


def _check(ops: OpSet) -> None:
    """Every op is in the DARTS op table and every edge has an op other than `none` (to derive a genotype from)."""
    unknown = [name for name in ops.primitives if name not in OPS]
    if unknown:
        raise ValueError(f"search_space.ops names unknown ops {unknown}; valid: {', '.join(OPS)}")
    for t in CELL_TYPES:
        for e, row in enumerate(ops.edges[t]):
            if all(name == "none" for name in row):
                raise ValueError(f"search_space.ops: {t} edge {e} searches only 'none'; a genotype needs another op")
