"""A study report over run directories: final metrics per method over seeds next to the published numbers, genotype
agreement across seeds, per-epoch curves (benchmark accuracy, skip connections) and accuracy against exact cost.

    darts-report multirun/2026-11-30/13-11-20 outputs/final [--out report]

A directory is a run directory (it holds ``config.yaml``) or holds run directories at any depth (a Hydra ``-m`` sweep).
A method is the strategy (its class, " 2nd order" added for ``order: 2``; ``train_final`` for retraining; a deployment
chain such as ``train_final + prune 50% + int8``) in a space (its class), e.g. ``GDAS / NB201Space``. Writes
``report.md``, ``report.csv`` (one row per run) and PNG figures (``darts.reporting.plots``, ``fronts``) into ``--out``,
by default ``report/`` beside the runs (inside the directory given, or the one holding all of them).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from darts.reporting.fronts import cost_figures
from darts.reporting.plots import (Agreement, EdgeVote, MethodReport, Published, Stat, benchmark_column, epoch_curves,
                                plot_curves, plot_published, render)
from darts.reporting.studies import pruned, section
from darts.runs.reader import Run, run_dirs
from darts.supernet import OpSet

log = logging.getLogger(__name__)
RESULT_METRICS = {  # each kind's final metrics in result.json (docs/run-directories.md)
    "search": ("valid_acc", "train_acc"), "discrete": ("score", "evaluations"),
    "final": ("test_accuracy", "best_valid_accuracy"),
    "deploy": ("test_accuracy", "params", "flops", "sparsity", "size_mb", "latency_ms_b1", "latency_ms_b64"),
}
COST, SKIP = "search_cost_s", "skip_connect"
IGNORED_SETTINGS = ("seed", "progress", "resume", "device")  # keys that may differ between the seeds of a method

_NB201, _T5 = "cifar10_test_200ep", "NB201 paper (Dong & Yang, ICLR 2020), Table 5"
_ERROR = "CIFAR-10 test error % after retraining"
_PROGRESSIVE = "with progressive learning (docs/methods/drnas.md)"
PUBLISHED: dict[tuple[str, str], Published] = {  # (strategy, space) -> the README's method index
    ("DARTS", "NB201Space"): Published(_NB201, 54.30, 0.00, f"{_T5}, DARTS-V1"),
    ("DARTS 2nd order", "NB201Space"): Published(_NB201, 54.30, 0.00, f"{_T5}, DARTS-V2"),
    ("GDAS", "NB201Space"): Published(_NB201, 93.61, 0.09, _T5),
    ("PCDARTS", "NB201Space"): Published(_NB201, 93.41, 0.30, "as run by DrNAS (Chen et al., ICLR 2021)"),
    ("DrNAS", "NB201Space"): Published(_NB201, 94.36, 0.00, f"DrNAS paper (Chen et al., ICLR 2021), {_PROGRESSIVE}"),
    ("RandomSearch", "NB201Space"): Published(_NB201, 93.70, 0.36, f"{_T5}, RS"),
    ("RegularizedEvolution", "NB201Space"): Published(_NB201, 93.92, 0.30, f"{_T5}, REA"),
    ("DARTS", "DartsSpace"): Published(_ERROR, 3.00, 0.14, "DARTS paper (Liu et al., ICLR 2019), Table 1, 1st order"),
    ("DARTS 2nd order", "DartsSpace"): Published(_ERROR, 2.76, 0.09, "DARTS paper (Liu et al., ICLR 2019), Table 1"),
    ("PCDARTS", "DartsSpace"): Published(_ERROR, 2.57, 0.07, "PC-DARTS paper (Xu et al., ICLR 2020), Table 1"),
    ("GDAS", "DartsSpace"): Published(_ERROR, 2.93, None, "GDAS paper (Dong & Yang, CVPR 2019), Table 1"),
    ("DrNAS", "DartsSpace"): Published(_ERROR, 2.46, 0.03, f"DrNAS paper (Chen et al., ICLR 2021), {_PROGRESSIVE}"),
}


class ReportedRun(Run):
    """A finished run as the report names and measures it."""

    @property
    def strategy(self) -> str:
        """The strategy's class name (`` 2nd order`` added for ``order: 2``); ``train_final`` for retraining; the
        chain of steps for a deployment run."""
        if self.kind == "deploy":
            return self.config["deploy"]["method"]
        strategy = self.config.get("strategy")
        if self.kind == "final" or not strategy:
            return "train_final"
        return strategy["_target_"].rsplit(".", 1)[-1] + (" 2nd order" if strategy.get("order") == 2 else "")

    @property
    def space_name(self) -> str:
        """The space's class name, e.g. ``NB201Space``."""
        return type(self.space).__name__

    @property
    def method(self) -> str:
        """``<strategy> / <space>``."""
        return f"{self.strategy} / {self.space_name}"

    @property
    def seed(self) -> int | None:
        """The run's ``seed``."""
        return self.config.get("seed")

    def metrics(self) -> dict[str, float]:
        """Final metrics: the kind's ``result.json`` values, the benchmark columns, the cost and the search cost (s)."""
        out = {k: float(self.result[k]) for k in RESULT_METRICS[self.kind] if self.result.get(k) is not None}
        parts = [self.result.get(part) for part in ("benchmark", "cost")]  # a discrete run's older cost: seconds
        out.update({k: float(v) for part in parts if isinstance(part, dict) for k, v in part.items()})
        cost = self.search_cost()
        return out if cost is None else {**out, COST: cost}

    def search_cost(self) -> float | None:
        """Wall seconds of the search: the sum of the epochs' ``epoch_time``, or a discrete run's ``elapsed``."""
        if self.kind == "discrete":
            return self.result.get("elapsed")
        times = [r["epoch_time"] for r in self.epochs if "epoch_time" in r]
        return float(sum(times)) if self.kind == "search" and times else None

    def indices(self, text: str) -> dict[str, list[int | None]]:
        """The op index per edge of each cell type of a genotype text (the space's ``one_hot``; None: unused)."""
        return {cell: list(m.index) for cell, m in self.space.one_hot(self.space.parse(text)).items()}


def load_run(path: Path) -> ReportedRun:
    """The finished run in ``path``; a file that cannot be read or a space that cannot be built is a ValueError."""
    try:
        run = ReportedRun.open(path)
        run.result, run.space  # read now: an unreadable run fails here, naming its directory
        return run
    except (ValueError, json.JSONDecodeError, ImportError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def collect(dirs: Iterable[str | Path]) -> list[ReportedRun]:
    """The finished runs at or below ``dirs``, each once; ValueError for a directory without runs, or none finished."""
    dirs = list(dirs)
    runs = []
    for path in dict.fromkeys(p.resolve() for d in dirs for p in run_dirs(d)):
        if not (path / "result.json").is_file() or pruned(path):
            log.warning("%s has not finished (no result.json, or a pruned trial): left out of the report", path)
            continue
        runs.append(load_run(path))
    if not runs:
        raise ValueError(f"no finished run (result.json) under {', '.join(map(str, dirs))}")
    return runs


def by_method(runs: Iterable[ReportedRun]) -> dict[str, list[ReportedRun]]:
    """Runs grouped by method, methods in order of first appearance."""
    groups: dict[str, list[ReportedRun]] = defaultdict(list)
    for run in runs:
        groups[run.method].append(run)
    return dict(groups)


def summarise(runs: Iterable[ReportedRun]) -> dict[str, dict[str, Stat]]:
    """Per method, per final metric: mean ± std (ddof=1) over the method's runs that report the metric."""
    summary = {}
    for method, group in by_method(runs).items():
        values: dict[str, list[float]] = defaultdict(list)
        for run in group:
            for name, value in run.metrics().items():
                values[name].append(value)
        summary[method] = {name: Stat.of(v) for name, v in values.items()}
    return summary


def edge_agreement(genotypes: list[dict[str, list[int | None]]], ops: OpSet) -> list[EdgeVote]:
    """Per cell type and edge, the most common op over ``genotypes`` (``one_hot`` indices, None for an unused edge;
    ties: lower index, unused last)."""
    votes = []
    for cell, edges in genotypes[0].items():
        for edge in range(len(edges)):
            counts = Counter(g[cell][edge] for g in genotypes)
            op, count = min(counts.items(), key=lambda kv: (-kv[1], ops.k if kv[0] is None else kv[0]))
            name = "unused" if op is None else ops.names(cell, edge)[op]
            votes.append(EdgeVote(cell, edge, name, count, len(genotypes)))
    return votes


def distance(a: dict[str, list[int]], b: dict[str, list[int]]) -> int:
    """Number of edges, over all cell types, whose op index differs between two genotypes."""
    return sum(x != y for cell in a for x, y in zip(a[cell], b[cell], strict=True))


def mean_pairwise_distance(genotypes: list[dict[str, list[int]]]) -> float | None:
    """Mean ``distance`` over all pairs of genotypes; None for fewer than two."""
    pairs = [distance(a, b) for i, a in enumerate(genotypes) for b in genotypes[i + 1:]]
    return float(np.mean(pairs)) if pairs else None


def agreement(runs: Iterable[ReportedRun]) -> dict[str, Agreement]:
    """Per method: the most common op per edge, the mean pairwise distance and the most common final genotype
    (genotypes with the same ``one_hot`` count as one: a DARTS node's two inputs may be listed in either order)."""
    out = {}
    for method, group in by_method(runs).items():
        indices = [run.indices(run.result["genotype"]) for run in group]
        keys = [tuple(map(tuple, ix.values())) for ix in indices]  # equal one_hot = the same network
        key, count = Counter(keys).most_common(1)[0]
        out[method] = Agreement(edge_agreement(indices, group[0].space.ops), mean_pairwise_distance(indices),
                                sum(map(len, indices[0].values())), group[keys.index(key)].result["genotype"], count)
    return out


def published(run: ReportedRun) -> Published | None:
    """The published result the run's preset names (``published`` in its config, conf/experiment/), else that of its
    method (``PUBLISHED``), if listed."""
    record = run.config.get("published")
    if isinstance(record, dict) and record.get("value") is not None:
        return Published(str(record["metric"]), float(record["value"]), record.get("std"), str(record["source"]))
    return PUBLISHED.get((run.strategy, run.space_name))


def skip_count(run: ReportedRun, record: dict[str, Any]) -> float | None:
    """Edges of a ``genotypes.jsonl`` record's genotype whose op is ``skip_connect`` (DARTS's collapse signal)."""
    ops = run.space.ops
    if SKIP not in ops.primitives:
        return None
    return float(sum(i is not None and ops.names(cell, e)[i] == SKIP
                     for cell, index in run.indices(record["genotype"]).items() for e, i in enumerate(index)))


def differing_settings(runs: list[ReportedRun]) -> list[str]:
    """Config keys (dotted) whose values differ between ``runs``, besides ``IGNORED_SETTINGS``."""
    def flat(value: Any, prefix: str) -> dict[str, str]:
        if not isinstance(value, dict):
            return {prefix: json.dumps(value)}
        return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}.{key}".lstrip(".")).items()}

    configs = [flat(run.config, "") for run in runs]
    keys = dict.fromkeys(k for c in configs for k in c if k.rsplit(".", 1)[-1] not in IGNORED_SETTINGS)
    return [k for k in keys if len({c.get(k) for c in configs}) > 1]


def method_reports(runs: list[ReportedRun]) -> list[MethodReport]:
    """What the report says about each method."""
    summary, agreements = summarise(runs), agreement(runs)
    return [MethodReport(method, [r.seed for r in group], summary[method], agreements[method], published(group[0]),
                         differing_settings(group)) for method, group in by_method(runs).items()]


def metric_order(runs: list[ReportedRun]) -> list[str]:
    """Every final metric of ``runs``: each kind's ``result.json`` metrics, the benchmark columns, the search cost."""
    kinds = [name for names in RESULT_METRICS.values() for name in names]
    return list(dict.fromkeys([*kinds, *(k for run in runs for k in run.metrics() if k != COST), COST]))


def write_csv(runs: list[ReportedRun], path: Path) -> None:
    """One row per run: method, space, seed, run dir, final metrics and benchmark columns, search cost, genotype."""
    metrics = [run.metrics() for run in runs]
    columns = [k for k in metric_order(runs) if any(k in m for m in metrics)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "strategy", "space", "seed", "run_dir", *columns, "genotype"])
        for run, m in zip(runs, metrics):
            writer.writerow([run.method, run.strategy, run.space_name, run.seed, run.path,
                             *(m.get(c, "") for c in columns), run.result.get("genotype", "")])


def write_figures(runs: list[ReportedRun], methods: list[MethodReport], out: Path) -> dict[str, Path]:
    """The PNG figures that have data, by key (``darts.reporting.plots.FIGURES``, ``published``)."""
    figures, groups = {}, by_method(runs)
    if column := benchmark_column(runs):
        curves = epoch_curves(groups, lambda run, record: (record.get("benchmark") or {}).get(column))
        figures["benchmark"] = plot_curves(
            curves, f"{column} (%)", "the epoch's genotype in the table, mean ± std over seeds", out / "benchmark.png")
    if skips := epoch_curves(groups, skip_count):
        figures["skip"] = plot_curves(skips, f"{SKIP} edges", "skip_connect edges of the epoch's genotype (collapse "
                                      "signal), mean ± std", out / "skip_connections.png")
    if measured := [m for m in methods if m.published and m.published.metric in m.stats]:
        figures["published"] = plot_published(measured, out / "published.png")
    return {**figures, **cost_figures(groups, out)}


def write_report(dirs: Iterable[str | Path], out: str | Path = "report") -> Path:
    """Write ``report.md``, ``report.csv`` and the figures of the runs under ``dirs`` into ``out``; the .md path."""
    dirs, out = list(dirs), Path(out)
    runs = collect(dirs)
    out.mkdir(parents=True, exist_ok=True)
    methods = method_reports(runs)
    write_csv(runs, out / "report.csv")
    figures = write_figures(runs, methods, out)
    unfinished = [p for d in dirs for p in run_dirs(d) if not (p / "result.json").is_file()]
    text = render(methods, metric_order(runs), [str(d) for d in dirs], unfinished, figures) + section(dirs)
    (out / "report.md").write_text(text)
    return out / "report.md"


def beside(dirs: list[Path]) -> Path:
    """Where a report goes by default: ``report/`` inside the one directory given, or inside the deepest directory
    holding all of them (never the current directory)."""
    return Path(os.path.commonpath([d.resolve() for d in dirs])) / "report"  # of one directory: that directory


def main(argv: list[str] | None = None) -> int:
    """``darts-report DIR [DIR ...] [--out OUTDIR]``; a user error is one line on stderr and status 1."""
    parser = argparse.ArgumentParser(prog="darts-report", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, or directories holding them (sweeps)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: report/ beside the runs: inside the directory given, or "
                             "inside the one holding all of them)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        path = write_report(args.dirs, args.out or beside(args.dirs))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}, {path.with_suffix('.csv').name} and the figures into {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
