"""Discrete search under a FLOPs budget, and multi-objective search of accuracy and FLOPs, on the NAS-Bench-201 table.

    python -m benchmarks.budget --table ../shared/data/nb201/nb201_accuracies.csv --seeds 100 --out /tmp/budget

Every strategy runs as a discrete run does (``ask``/``tell`` with the table's ``cifar10_valid_12ep`` as the score, the
search signal of NB201's own baselines), with its default settings (``conf/strategy/*.yaml``), for 100 evaluations:

(a) constrained: ``constraint.flops=T`` for random search, regularized evolution and BO (BANANAS), for T the 25th and
    50th percentile of the FLOPs of the 15,625 cells. The reported genotype (``best()``, the run's result) is checked
    to be feasible; its gap to the best feasible cell by brute force over all cells is given in the search signal
    (``cifar10_valid_12ep``) and in the test accuracy the NB201 docs report (``cifar10_test_200ep``).
(b) multi-objective: ``objectives=[accuracy, flops]`` for random search, evolution, BO and PSO. The hypervolume of the
    front after 100 evaluations (accuracy = ``cifar10_valid_12ep``) against the reference point (accuracy 0, the
    largest FLOPs of the space), as a fraction of the hypervolume of the brute-force front of all 15,625 cells.

FLOPs and parameters are the exact cost model's (``darts.cost.model.CostModel``: NATS-Bench's counts, C=16, N=5,
CIFAR-10). Writes ``budget.json`` (every run) and the figures ``budget_gaps.png`` and ``budget_fronts.png`` into
``--out`` and prints the Markdown tables of docs/constrained-search.md. Runs on one thread; BO fits its predictor
ensemble 9 times per run (about 3 s a run on one CPU core; everything else takes well under a second a run).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from darts.cost.model import CostModel
from darts.strategies.discrete.bananas import Bananas
from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.evolution import RegularizedEvolution
from darts.strategies.discrete.objectives import Objectives
from darts.strategies.discrete.pareto import hypervolume, non_dominated
from darts.strategies.discrete.pso import ParticleSwarm
from darts.strategies.discrete.random_search import RandomSearch
from search_spaces.nb201 import NB201Benchmark, NB201Space

SIGNAL, TEST = "cifar10_valid_12ep", "cifar10_test_200ep"
PERCENTILES = (25, 50)
METHODS = {"random": RandomSearch, "evolution": RegularizedEvolution, "bo": Bananas, "pso": ParticleSwarm}
CONSTRAINED = ("random", "evolution", "bo")
NAMES = {"random": "random search", "evolution": "regularized evolution", "bo": "BO (BANANAS)", "pso": "PSO"}


@dataclass
class Bench:
    """The NB201 table with each cell's exact FLOPs."""

    space: NB201Space
    row: dict[str, int]  # cell text -> row
    valid: np.ndarray  # [N] the search signal
    test: np.ndarray  # [N] the reported accuracy
    flops: np.ndarray  # [N] millions of MACs
    cost: Callable[[Any], dict[str, float]]

    def index(self, genotype: Any) -> int:
        """The table row of a genotype."""
        return self.row[self.space.to_text(genotype)]


def load(path: Path) -> Bench:
    """The table, its cells' FLOPs by the cost model (checked against NATS-Bench's value of cell 0)."""
    space = NB201Space()
    table = NB201Benchmark(path, space)
    model = CostModel.measure(space, 10, 32)
    cells = [space.parse(text) for text in table.archs]
    flops = np.array([model.cost(g)["flops"] for g in cells])
    assert abs(flops[0] - 15.64737) < 1e-9, flops[0]  # NATS-Bench's FLOPs of cell 0 on CIFAR-10
    return Bench(space, {t: i for i, t in enumerate(table.archs)}, table.values(SIGNAL), table.values(TEST), flops,
                 model.cost)


def search(strategy: DiscreteStrategy, bench: Bench) -> DiscreteStrategy:
    """Ask and tell until the budget is spent, scoring by the table's search signal."""
    while not strategy.done:
        strategy.tell([float(bench.valid[bench.index(g)]) for g in strategy.ask()])
    return strategy


def constrained(bench: Bench, method: str, limit: float, seed: int) -> dict[str, Any]:
    """One run under ``constraint.flops=limit``: the reported genotype's accuracies and gaps, rejections, time."""
    start = time.process_time()
    constraint = Constraint({"flops": limit}, bench.cost)
    strategy = search(METHODS[method](bench.space, budget=100, seed=seed, constraint=constraint), bench)
    proposed = [bench.index(g) for g, _ in strategy.history]
    best = bench.index(strategy.best()[0])
    feasible = bench.flops <= limit
    return {"part": "constrained", "method": method, "limit": limit, "seed": seed, "cell": best,
            "feasible": bool(feasible[best]), "all_feasible": bool(feasible[proposed].all()),
            "valid": bench.valid[best], "test": bench.test[best], "flops": bench.flops[best],
            "gap_valid": bench.valid[feasible].max() - bench.valid[best],
            "gap_test": bench.test[feasible].max() - bench.test[best], "rejected": constraint.rejected,
            "distinct": len(set(proposed)), "cpu_s": time.process_time() - start}


def front_volume(bench: Bench, cells: list[int], column: np.ndarray) -> float:
    """The hypervolume of cells' (accuracy, FLOPs) against (0, the space's largest FLOPs), accuracy maximised."""
    return hypervolume([(-column[i], bench.flops[i]) for i in cells], (0.0, bench.flops.max()))


def multi_objective(bench: Bench, method: str, seed: int, full: dict[str, float]) -> dict[str, Any]:
    """One run with objectives [accuracy, flops]: its front and hypervolume fractions (signal and test)."""
    start = time.process_time()
    objectives = Objectives(["accuracy", "flops"], bench.cost, {"flops": float(bench.flops.max())})
    strategy = search(METHODS[method](bench.space, budget=100, seed=seed, objectives=objectives), bench)
    front = [bench.index(g) for g, _ in strategy.front()]
    volume = objectives.hypervolume(strategy.front())
    assert abs(volume - front_volume(bench, front, bench.valid)) < 1e-6 * volume
    return {"part": "pareto", "method": method, "seed": seed, "front": front, "hypervolume": volume,
            "fraction_valid": volume / full["valid"],
            "fraction_test": front_volume(bench, front, bench.test) / full["test"],
            "cpu_s": time.process_time() - start}


def brute_force(bench: Bench) -> dict[str, Any]:
    """Per budget, the best feasible cells; the fronts and hypervolumes of all cells (signal and test)."""
    limits = {p: float(np.percentile(bench.flops, p, method="lower")) for p in PERCENTILES}
    fronts = {name: non_dominated(list(zip(-column, bench.flops))) for name, column in (("valid", bench.valid),
                                                                                       ("test", bench.test))}
    return {"limits": limits, "fronts": fronts,
            "volumes": {name: front_volume(bench, cells, getattr(bench, name)) for name, cells in fronts.items()},
            "feasible": {p: int((bench.flops <= t).sum()) for p, t in limits.items()}}


def welch(a: list[float], b: list[float]) -> str:
    """Welch's t-test of mean(a) < mean(b), as 't, one-sided p'."""
    t, p = stats.ttest_ind(a, b, equal_var=False, alternative="less")
    return f"t = {t:.1f}, p = {p:.1g}"


def report(runs: list[dict[str, Any]], brute: dict[str, Any], bench: Bench) -> str:
    """The Markdown tables: gaps per method and budget (mean ± std), hypervolume fractions."""
    lines = ["| budget | method | seeds | test acc. (%) | gap, test | gap, search signal | rejected | vs random "
             "(gap, test) | vs random (gap, signal) |", "|" + " --- |" * 9]
    for p, limit in brute["limits"].items():
        feasible = bench.flops <= limit
        for method in CONSTRAINED:
            rows = [r for r in runs if r["part"] == "constrained" and r["method"] == method and r["limit"] == limit]
            if not rows:
                continue
            assert all(r["feasible"] and r["all_feasible"] for r in rows)
            base = [r for r in runs if r["part"] == "constrained" and r["method"] == "random" and r["limit"] == limit]
            col = {k: [r[k] for r in rows] for k in ("test", "gap_test", "gap_valid", "rejected")}
            versus = ["", ""] if method == "random" else [welch(col["gap_test"], [r["gap_test"] for r in base]),
                                                           welch(col["gap_valid"], [r["gap_valid"] for r in base])]
            lines.append(f"| flops <= {limit:.2f} (P{p}, {feasible.sum()} cells) | {NAMES[method]} | {len(rows)} | "
                         + " | ".join(f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" for v in col.values())
                         + " | " + " | ".join(versus) + " |")
        oracle = np.flatnonzero(feasible)[bench.valid[feasible].argmax()]  # the signal's best feasible cell
        lines.append(f"| flops <= {limit:.2f} (P{p}) | best feasible cell by the search signal (brute force) | | "
                     f"{bench.test[oracle]:.2f} | {bench.test[feasible].max() - bench.test[oracle]:.2f} | 0 | | | |")
    lines += ["", "| method | seeds | hypervolume / brute force (search signal) | (test accuracy) | CPU s a run |",
              "| --- | --- | --- | --- | --- |"]
    for method in METHODS:
        rows = [r for r in runs if r["part"] == "pareto" and r["method"] == method]
        if rows:
            lines.append(f"| {NAMES[method]} | {len(rows)} | " + " | ".join(
                f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}" for v in ([r["fraction_valid"] for r in rows],
                                                                       [r["fraction_test"] for r in rows]))
                + f" | {np.mean([r['cpu_s'] for r in rows]):.2f} |")
    return "\n".join(lines)


def _figure(columns: int = 1) -> tuple[Figure, Any]:
    """A figure on an Agg canvas and its axes."""
    fig = Figure(figsize=(6.4 if columns == 1 else 9.6, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns)


def plot_gaps(runs: list[dict[str, Any]], limits: dict[int, float], path: Path) -> None:
    """Per budget and constrained method: mean ± std over seeds of the gap to the best feasible cell, in the search
    signal and in the test accuracy."""
    fig, axes = _figure(len(limits))
    for ax, (p, limit) in zip(axes, limits.items()):
        for k, method in enumerate(CONSTRAINED):
            rows = [r for r in runs if r["part"] == "constrained" and r["method"] == method and r["limit"] == limit]
            for dx, key, marker in () if len(rows) < 2 else ((-0.1, "gap_valid", "o"), (0.1, "gap_test", "D")):
                values = [r[key] for r in rows]
                ax.errorbar(k + dx, np.mean(values), yerr=np.std(values, ddof=1), fmt=marker, capsize=4,
                            color=f"C{k}", mfc="white" if key == "gap_test" else f"C{k}",
                            label=None if k else {"gap_valid": "search signal (valid, 12 ep.)",
                                                  "gap_test": "test accuracy (200 ep.)"}[key])
        ax.set_xticks(range(len(CONSTRAINED)), [NAMES[m] for m in CONSTRAINED], fontsize=8)
        ax.set_title(f"flops <= {limit:.2f} M (P{p})", fontsize=9)
        ax.set_ylabel("gap to the best feasible cell (points)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_fronts(runs: list[dict[str, Any]], brute: list[int], bench: Bench, path: Path, seed: int = 0) -> None:
    """Every cell (grey), the brute-force front (black) and each method's front after 100 evaluations (seed 0):
    validation accuracy against FLOPs."""
    fig, ax = _figure()
    ax.scatter(bench.flops, bench.valid, s=1, color="0.85", label="all 15,625 cells", rasterized=True)

    def stairs(cells: list[int], **style: Any) -> None:
        order = sorted(cells, key=lambda i: bench.flops[i])
        ax.step(bench.flops[order], bench.valid[order], where="post", marker="o", markersize=3, **style)

    stairs(brute, color="black", label="brute-force front")
    for k, method in enumerate(METHODS):
        rows = [r for r in runs if r["part"] == "pareto" and r["method"] == method and r["seed"] == seed]
        if rows:
            stairs(rows[0]["front"], color=f"C{k}", alpha=0.8, label=f"{NAMES[method]} (seed {seed})")
    ax.set_xscale("log")
    ax.set_ylim(max(0.0, float(np.percentile(bench.valid, 5))), bench.valid.max() + 1)
    ax.set_xlabel("FLOPs (M multiply-accumulates)")
    ax.set_ylabel(f"{SIGNAL} (%)")
    ax.set_title("objectives=[accuracy, flops]: fronts after 100 evaluations", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    """Run both parts (or the ones asked) and write budget.json, the figures and the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True, help="the NB201 CSV (nb201_accuracies.csv)")
    parser.add_argument("--seeds", type=int, default=100, help="seeds 0..n-1 per method and setting")
    parser.add_argument("--bo-seeds", type=int, default=None, help="seeds for BO (default: --seeds)")
    parser.add_argument("--out", type=Path, default=Path("budget"), help="output directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    bench = load(args.table)
    brute = brute_force(bench)
    runs = []
    for method in METHODS:
        seeds = range(args.bo_seeds if method == "bo" and args.bo_seeds is not None else args.seeds)
        for seed in seeds:
            if method in CONSTRAINED:
                runs += [constrained(bench, method, limit, seed) for limit in brute["limits"].values()]
            runs.append(multi_objective(bench, method, seed, brute["volumes"]))
        print(f"{method}: {len(seeds)} seeds done", flush=True)
    (args.out / "budget.json").write_text(json.dumps({"brute_force": brute, "runs": runs}, default=float))
    plot_gaps(runs, brute["limits"], args.out / "budget_gaps.png")
    plot_fronts(runs, brute["fronts"]["valid"], bench, args.out / "budget_fronts.png")
    print(report(runs, brute, bench))


if __name__ == "__main__":
    main()
