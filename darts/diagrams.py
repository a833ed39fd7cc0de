"""Cell diagrams as the papers draw them: the cell's inputs on the left, its intermediate nodes, its output on the
right, each edge an arrow labelled with its op (DARTS Fig. 1/4-5; NAS-Bench-201 Fig. 1).

A space describes a genotype's cells as ``CellGraph``s (``SearchSpace.cell_graphs``); this module draws them with
matplotlib's object API (a ``Figure`` on an Agg canvas): headless, no system binary, no global pyplot state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

INPUT, NODE, OUTPUT = "#a6cee3", "#fdbf6f", "#b2df8a"  # node colours: inputs, intermediate nodes, output


@dataclass(frozen=True)
class CellGraph:
    """One cell: ``inputs`` and ``nodes`` are node names in drawing order, ``edges`` (source, target, op) pairs
    of names, ``output`` the name of a separate output node fed unlabelled by the ``concat`` nodes (None when the
    last intermediate node is the output, as in NB201)."""

    inputs: tuple[str, ...]
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str, str], ...]
    output: str | None = None
    concat: tuple[str, ...] = field(default=())


def _positions(cell: CellGraph) -> dict[str, tuple[float, float]]:
    """Left to right by depth (longest path from an input), as graphviz ranks the DARTS cells: inputs in column 0,
    each node one column after its deepest input, the output last; nodes of a column spread vertically."""
    depth = {name: 0 for name in cell.inputs}
    for name in cell.nodes:  # nodes are in topological order
        depth[name] = 1 + max((depth[src] for src, dst, _ in cell.edges if dst == name and src in depth), default=0)
    if cell.output is not None:
        depth[cell.output] = 1 + max(depth.values())
    pos = {}
    for column in sorted(set(depth.values())):
        names = [n for n in depth if depth[n] == column]
        for k, name in enumerate(names):
            pos[name] = (2.4 * column, 1.5 * ((len(names) - 1) / 2 - k))
    return pos


def _size(cell: CellGraph) -> tuple[float, float]:
    """Figure width and height in inches for one cell."""
    xs, ys = zip(*_positions(cell).values())
    return 1.5 + 1.1 * (max(xs) - min(xs)), 1.4 + 0.9 * (max(ys) - min(ys))


def _draw_into(ax, cell: CellGraph, title: str) -> None:
    """Draw ``cell`` into the axes ``ax``."""
    pos = _positions(cell)
    ax.set_axis_off()
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    sources = [src for src, _, _ in cell.edges]
    for k, (src, dst, op) in enumerate(cell.edges):
        # labels of edges leaving one node spread along them; an edge skipping a column bends around its nodes
        nth, count = sources[:k].count(src), sources.count(src)
        skips = pos[dst][0] - pos[src][0] > 2.5
        _arrow(ax, pos[src], pos[dst], op, at=0.3 + 0.45 * (nth + 1) / (count + 1), rad=0.3 if skips else 0.0)
    for name in cell.concat:
        _arrow(ax, pos[name], pos[cell.output], "", colour="0.6")
    for name, (x, y) in pos.items():
        colour = INPUT if name in cell.inputs else OUTPUT if name == cell.output else NODE
        ax.text(x, y, name, ha="center", va="center", fontsize=9, zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", facecolor=colour, edgecolor="0.3"))
    if title:
        ax.set_title(title, fontsize=10)


def draw_genotype(cells: dict[str, CellGraph], title: str = "") -> Figure:
    """The diagrams of a genotype's cell types (``SearchSpace.cell_graphs``), one above the other."""
    sizes = [_size(cell) for cell in cells.values()]
    fig = Figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes) + 0.3 * len(cells)), dpi=100)
    FigureCanvasAgg(fig)
    for k, (cell_type, cell) in enumerate(cells.items()):
        _draw_into(fig.add_subplot(len(cells), 1, k + 1), cell, cell_type if len(cells) > 1 else "")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str, at: float = 0.5, rad: float = 0.0,
           colour: str = "0.15") -> None:
    """An arrow from ``start`` to ``end`` bent by ``rad`` (matplotlib's arc3), its label at fraction ``at`` of the
    way along the curve."""
    ax.add_patch(FancyArrowPatch(start, end, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=10,
                                 shrinkA=16, shrinkB=16, color=colour, linewidth=1.0, zorder=1))
    if label:
        (x0, y0), (x1, y1) = start, end
        cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)  # arc3's control point
        x = (1 - at) ** 2 * x0 + 2 * at * (1 - at) * cx + at ** 2 * x1  # the quadratic Bezier at ``at``
        y = (1 - at) ** 2 * y0 + 2 * at * (1 - at) * cy + at ** 2 * y1
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))


def to_image(fig: Figure) -> np.ndarray:
    """The figure as an RGB image (H, W, 3) uint8, e.g. for TensorBoard."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure; the format follows the suffix (png, pdf, svg)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"cannot draw to {path}: the file must end in .png, .pdf or .svg")
    fig.savefig(path, bbox_inches="tight")
    return path
