"""How ``darts.reporting.report`` draws a study: the values it reports (per method), ``report.md``'s tables and the PNG
figures (per-epoch mean +- std bands per method; the measured result against the published one). Figures use
matplotlib's object API (``Figure`` on a ``FigureCanvasAgg``), never pyplot, so the process's backend is left alone.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


@dataclass(frozen=True)
class Stat:
    """Mean and sample std (ddof=1; None for a single value) of ``n`` values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        """The statistics of ``values``."""
        v = np.asarray(list(values), dtype=float)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v))


@dataclass(frozen=True)
class Published:
    """A published result: ``metric`` (a benchmark column, or what was measured), value, std, source."""

    metric: str
    value: float
    std: float | None
    source: str


@dataclass(frozen=True)
class EdgeVote:
    """The most common op of one edge across runs (ties: the lower op index) and how many runs chose it."""

    cell_type: str
    edge: int
    op: str
    count: int
    runs: int

    @property
    def fraction(self) -> float:
        """Share of the runs that chose ``op``."""
        return self.count / self.runs


@dataclass(frozen=True)
class Agreement:
    """Genotype agreement across the runs of one method."""

    edges: list[EdgeVote]
    mean_distance: float | None  # edges whose op differs, mean over pairs of runs; None for one run
    num_edges: int  # edges of a genotype, over all cell types
    common_genotype: str
    common_count: int  # runs whose final genotype is common_genotype


@dataclass(frozen=True)
class MethodReport:
    """Everything the report says about one method (a strategy in a space)."""

    method: str
    seeds: list[Any]
    stats: dict[str, Stat]  # final metric -> mean +- std over the runs reporting it
    agreement: Agreement
    published: Published | None
    differing: list[str]  # config keys that differ between its runs (besides the seed)


@dataclass(frozen=True)
class Curve:
    """One method's per-epoch values: epochs [T], mean [T], std [T] (ddof=1; NaN where fewer than two runs)."""

    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def epoch_curves(groups: dict[str, list[Any]], value: Callable[[Any, dict], float | None]) -> dict[str, Curve]:
    """Per method of ``groups`` (method -> runs with ``.epochs`` records): mean and std over runs of ``value``."""
    curves = {}
    for method, runs in groups.items():
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for record in run.epochs:
                v = value(run, record)
                if v is not None:
                    per_epoch[record["epoch"]].append(v)
        if per_epoch:
            stats = [Stat.of(per_epoch[e]) for e in sorted(per_epoch)]
            curves[method] = Curve(np.asarray(sorted(per_epoch)), np.asarray([s.mean for s in stats]),
                                   np.asarray([np.nan if s.std is None else s.std for s in stats]))
    return curves


def benchmark_column(runs: Iterable[Any]) -> str | None:
    """The per-epoch benchmark column to plot: the first ending in ``_test_200ep``, else the first one, else None."""
    columns = list(dict.fromkeys(k for run in runs for r in run.epochs for k in r.get("benchmark") or {}))
    return next((c for c in columns if c.endswith("_test_200ep")), columns[0] if columns else None)


def fmt(value: float | None) -> str:
    """A number for a table: two decimals in the usual range, else three significant digits."""
    if value is None or np.isnan(value):
        return ""
    return f"{value:.2f}" if value == 0 or 0.1 <= abs(value) < 1e5 else f"{value:.3g}"


def fmt_stat(stat: Stat | None, runs: int | None = None) -> str:
    """``mean ± std``; ``(n=k)`` added when only k of the method's ``runs`` report the metric."""
    if stat is None:
        return ""
    text = fmt(stat.mean) + ("" if stat.std is None else f" ± {fmt(stat.std)}")
    return text + (f" (n={stat.n})" if runs is not None and stat.n != runs else "")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def metrics_table(methods: list[MethodReport], metrics: list[str]) -> list[str]:
    """Final ``metrics`` (rows) by method (columns): mean ± std over seeds, and the published number."""
    names = [name for name in metrics if any(name in m.stats for m in methods)]
    rows = [["runs (seeds)", *(f"{len(m.seeds)} ({', '.join(map(str, m.seeds))})" for m in methods)]]
    rows += [[f"`{name}`", *(fmt_stat(m.stats.get(name), len(m.seeds)) for m in methods)] for name in names]
    rows.append(["published", *(f"{fmt_stat(Stat(p.value, p.std, 1))} ({p.metric})" if (p := m.published) else ""
                                 for m in methods)])
    return _table(["metric", *(m.method for m in methods)], rows)


def published_table(methods: list[MethodReport]) -> list[str]:
    """Per method with a published result: its metric as measured here next to the published value and source."""
    rows = [[m.method, p.metric, fmt_stat(m.stats.get(p.metric)) or "not measured (retrain with train_final.py)",
             fmt_stat(Stat(p.value, p.std, 1)), p.source] for m in methods if (p := m.published)]
    return _table(["method", "metric", "this study", "published", "source"], rows) if rows else ["(none listed)", ""]


def agreement_section(m: MethodReport) -> list[str]:
    """One method's genotype agreement: distance, most common genotype, most common op per edge."""
    a, runs = m.agreement, len(m.seeds)
    distance = "n/a (one run)" if a.mean_distance is None else f"{a.mean_distance:.2f} of {a.num_edges} edges"
    lines = [f"### {m.method} ({runs} run{'s' * (runs != 1)})", "",
             f"- mean pairwise distance (edges whose op differs): {distance}",
             f"- most common genotype ({a.common_count} of {runs} runs): `{a.common_genotype}`", ""]
    rows = [[e.cell_type, str(e.edge), f"`{e.op}`", f"{e.count}/{e.runs} ({e.fraction:.2f})"] for e in a.edges]
    return lines + _table(["cell", "edge", "most common op", "runs choosing it"], rows)


FIGURES = {  # figure key (darts.reporting.report.write_figures) -> section title
    "benchmark": "Benchmark accuracy of the current genotype per epoch",
    "skip": "Skip connections per epoch",
    "cost": "Accuracy against cost",
    "pareto": "Fronts kept by multi-objective searches",
}


def render(methods: list[MethodReport], metrics: list[str], sources: list[str], unfinished: list[Path],
           figures: dict[str, Path]) -> str:
    """``report.md``: final ``metrics`` (in this order) by method, published results, agreement, per-epoch figures."""
    runs = sum(len(m.seeds) for m in methods)
    lines = ["# Study report", "", f"{runs} finished runs of {len(methods)} methods, from "
             + ", ".join(f"`{s}`" for s in sources) + ". One row per run: `report.csv`.", ""]
    if unfinished:
        lines += [f"Left out, not finished (no `result.json`): {', '.join(f'`{p}`' for p in unfinished)}.", ""]
    lines += ["## Final metrics", "", "Mean ± std (ddof=1) over the runs of each method; `search_cost_s` is the sum "
              "of the epochs' `epoch_time` (gradient searches) or the run's `elapsed` (discrete searches).", ""]
    lines += metrics_table(methods, metrics)
    notes = [f"- {m.method}: {', '.join(f'`{k}`' for k in m.differing)}" for m in methods if m.differing]
    lines += ["Settings that differ between the runs of a method, besides the seed:", "", *notes, ""] if notes else []
    lines += ["## Against published results", ""] + published_table(methods)
    lines += [f"![against published results]({figures['published'].name})", ""] if "published" in figures else []
    lines += ["## Genotype agreement across seeds", "", "Edges numbered as the space's `one_hot` orders them.", ""]
    for m in methods:
        lines += agreement_section(m)
    for key, title in FIGURES.items():
        lines += [f"## {title}", "", f"![{title}]({figures[key].name})", ""] if key in figures else []
    return "\n".join(lines)


def new_figure() -> tuple[Figure, Any]:
    """A figure on an Agg canvas and its single axes."""
    fig = Figure(figsize=(6.4, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, ax: Any, title: str, path: Path) -> Path:
    """Title, grid, legend, tight layout; write ``path``."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(curves: dict[str, Curve], ylabel: str, title: str, path: Path) -> Path:
    """Each method's mean against the epoch (1-based, as the log counts), with a mean ± std band (two runs or more)."""
    fig, ax = new_figure()
    for method, c in curves.items():
        (line,) = ax.plot(c.epochs + 1, c.mean, marker="o", markersize=3, label=method)
        ax.fill_between(c.epochs + 1, c.mean - c.std, c.mean + c.std, color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    return save_figure(fig, ax, title, path)


def plot_published(methods: list[MethodReport], path: Path) -> Path:
    """Per method, the measured mean ± std of its published metric beside the published value ± std."""
    fig, ax = new_figure()
    x = np.arange(len(methods))
    stats = [m.stats[m.published.metric] for m in methods]
    ax.errorbar(x - 0.1, [s.mean for s in stats], yerr=[s.std or 0.0 for s in stats], fmt="o", capsize=4,
                label="this study")
    ax.errorbar(x + 0.1, [m.published.value for m in methods], yerr=[m.published.std or 0.0 for m in methods],
                fmt="D", color="black", capsize=4, label="published")
    ax.set_xticks(x, [m.method for m in methods], rotation=15, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_ylabel(" / ".join(dict.fromkeys(m.published.metric for m in methods)), fontsize=8)
    return save_figure(fig, ax, "final genotype against the published result (mean ± std over seeds)", path)
