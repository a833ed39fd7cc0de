"""The study report's accuracy-against-cost figures (``darts.reporting.report``): each run's genotype at its exact cost
(``cost`` in result.json) with each method's Pareto front over its runs, and the fronts that multi-objective discrete
searches kept (``pareto_front``: their score against their first cost objective)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from darts.reporting.plots import new_figure, save_figure
from darts.strategies.discrete.pareto import non_dominated

COSTS = {"flops": "FLOPs (M multiply-accumulates)", "params": "parameters (M)", "latency": "latency (ms)"}
ACCURACIES = ("test_accuracy", "score", "valid_acc")  # a run's own accuracy, when no benchmark column is known
Points = dict[str, list[tuple[float, float]]]  # method -> (cost, accuracy) points


def result_column(groups: dict[str, list[Any]]) -> str | None:
    """The benchmark column to plot: the first ``*_test_200ep`` of the runs' results (None: their own accuracies)."""
    columns = dict.fromkeys(k for runs in groups.values() for run in runs for k in run.result.get("benchmark") or {})
    return next((c for c in columns if c.endswith("_test_200ep")), None)


def accuracy(run: Any, column: str | None) -> float | None:
    """The run's accuracy: its benchmark ``column``, else its first own accuracy (``ACCURACIES``)."""
    benchmark = run.result.get("benchmark") or {}
    if column in benchmark:
        return float(benchmark[column])
    return next((float(run.result[k]) for k in ACCURACIES if isinstance(run.result.get(k), (int, float))), None)


def genotype_points(groups: dict[str, list[Any]], column: str | None) -> tuple[str | None, Points]:
    """The cost metric most runs have (FLOPs first) and, per method, (cost, accuracy) of each run's genotype."""
    costs = [run.result.get("cost") for runs in groups.values() for run in runs]
    metric = next((m for m in COSTS if any(isinstance(c, dict) and m in c for c in costs)), None)
    points: Points = {}
    for method, runs in groups.items():
        for run in runs:
            cost, acc = run.result.get("cost"), accuracy(run, column)
            if isinstance(cost, dict) and metric in cost and acc is not None:
                points.setdefault(method, []).append((float(cost[metric]), acc))
    return metric, points


def searched_fronts(groups: dict[str, list[Any]]) -> tuple[str | None, Points]:
    """The first cost objective of the multi-objective runs and, per method, the (cost, score) points of its runs'
    ``pareto_front``s."""
    metric, points = None, {}
    for method, runs in groups.items():
        for run in runs:
            objectives = run.result.get("objectives") or []
            if run.result.get("pareto_front") and len(objectives) > 1:
                metric = metric or next(o for o in objectives if o != "accuracy")
                points.setdefault(method, []).extend(
                    (float(p[metric]), float(p["accuracy"])) for p in run.result["pareto_front"] if metric in p)
    return metric, points


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (cost minimised, accuracy maximised), by cost."""
    return sorted(points[i] for i in non_dominated([(c, -a) for c, a in points]))


def plot_fronts(points: Points, metric: str, ylabel: str, title: str, path: Path) -> Path:
    """Each method's points and its front (a staircase), accuracy against cost."""
    fig, ax = new_figure()
    for k, (method, values) in enumerate(points.items()):
        ax.scatter([c for c, _ in values], [a for _, a in values], s=10, alpha=0.4, color=f"C{k}")
        best = front(values)
        ax.step([c for c, _ in best], [a for _, a in best], where="post", marker="o", markersize=4, color=f"C{k}",
                label=f"{method} ({len(values)} points, front of {len(best)})")
    ax.set_xlabel(COSTS[metric])
    ax.set_ylabel(ylabel)
    return save_figure(fig, ax, title, path)


def cost_figures(groups: dict[str, list[Any]], out: Path) -> dict[str, Path]:
    """The figures that have data: ``cost`` (each run's genotype; its benchmark test accuracy, else its own accuracy)
    and ``pareto`` (the fronts multi-objective searches kept)."""
    figures, column = {}, result_column(groups)
    metric, points = genotype_points(groups, column)
    if points:
        figures["cost"] = plot_fronts(points, metric, f"{column or 'accuracy'} (%)",
                                      "each run's genotype at its exact cost; lines: each method's front",
                                      out / "accuracy_cost.png")
    metric, points = searched_fronts(groups)
    if points:
        figures["pareto"] = plot_fronts(points, metric, "score (the search's accuracy)",
                                        "fronts kept by multi-objective searches (all their runs)",
                                        out / "pareto_fronts.png")
    return figures
