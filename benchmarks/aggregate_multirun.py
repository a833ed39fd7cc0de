"""Aggregate the final genotypes of a discrete-search multirun: mean +- std of benchmark metrics over seeds.

    python benchmarks/aggregate_multirun.py /tmp/rs /tmp/rea                  # one row per sweep directory
    python benchmarks/aggregate_multirun.py /tmp/rs /tmp/rea --column cifar100_test_200ep
    python benchmarks/aggregate_multirun.py /tmp/rs /tmp/rea --plot curve.png --table nb201_accuracies.csv

Each sweep directory holds one job directory per seed (Hydra's ``<sweep dir>/<job number>/``) with the
``result.json`` of a run whose evaluator or ``benchmark.path`` reported the NB201 accuracies. ``--plot`` draws
the mean (over seeds) benchmark value of the best-so-far genotype against the number of evaluations, from each
job's ``history.jsonl`` and the table. The std is the sample standard deviation (ddof=1).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def finals(sweep: Path, column: str) -> np.ndarray:
    """``result.json``'s ``benchmark[column]`` of every finished job of ``sweep``."""
    values = []
    for path in sorted(sweep.glob("*/result.json")):
        benchmark = json.loads(path.read_text()).get("benchmark")
        if not benchmark or column not in benchmark:
            sys.exit(f"{path} has no benchmark value {column!r} (run with evaluator=tabular or benchmark.path=...)")
        values.append(benchmark[column])
    if not values:
        sys.exit(f"no */result.json under {sweep}")
    return np.asarray(values)


def incumbent_curve(sweep: Path, table, column: str) -> np.ndarray:
    """[seeds, evaluations] benchmark ``column`` of the best-scored genotype after each evaluation."""
    curves = []
    for path in sorted(sweep.glob("*/history.jsonl")):
        best, curve = -np.inf, []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["score"] > best:
                best, value = record["score"], table.query(record["genotype"], column)
            curve.append(value)
        curves.append(curve)
    length = min(map(len, curves))
    return np.asarray([c[:length] for c in curves])


def plot(sweeps: list[Path], table_path: Path, column: str, out: Path) -> None:
    """Mean +- std (shaded) of the incumbent's ``column`` against evaluations, one line per sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search_spaces.nb201 import NB201Benchmark

    table = NB201Benchmark(table_path)
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    low, high = np.inf, -np.inf
    for sweep in sweeps:
        curves = incumbent_curve(sweep, table, column)  # [S, N]
        mean, std = curves.mean(0), curves.std(0, ddof=1)
        steps = np.arange(1, curves.shape[1] + 1)
        ax.plot(steps, mean, label=f"{sweep.name} ({curves.shape[0]} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        tail = slice(min(9, len(mean) - 1), None)  # from the 10th evaluation on: the first ones span tens of points
        low, high = min(low, float((mean - std)[tail].min())), max(high, float((mean + std)[tail].max()))
    ax.set_ylim(low - 0.1, high + 0.1)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"{column} (%)")
    ax.set_title("best-so-far genotype, mean +- std over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    """Print a markdown table of mean +- std per sweep (and draw the curve with --plot)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="Hydra sweep directories (one job directory per seed)")
    parser.add_argument("--column", default="cifar10_test_200ep", help="benchmark column to aggregate")
    parser.add_argument("--plot", type=Path, help="write the incumbent curve to this image")
    parser.add_argument("--table", type=Path, help="the NB201 CSV (needed by --plot)")
    args = parser.parse_args()
    print(f"| sweep | seeds | {args.column} (mean +- std) | min | max |\n| --- | --- | --- | --- | --- |")
    for sweep in args.sweeps:
        v = finals(sweep, args.column)
        print(f"| {sweep} | {len(v)} | {v.mean():.2f} +- {v.std(ddof=1):.2f} | {v.min():.2f} | {v.max():.2f} |")
    if args.plot:
        if args.table is None:
            sys.exit("--plot needs --table /path/to/nb201_accuracies.csv")
        plot(args.sweeps, args.table, args.column, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
