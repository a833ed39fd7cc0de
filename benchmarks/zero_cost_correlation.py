"""Rank correlation of zero-cost proxies with NAS-Bench-201's CIFAR-10 test accuracy, next to the published values.

    python benchmarks/zero_cost_correlation.py --table nb201_accuracies.csv --data cifar10-mini --n 1000 \\
        --csv /tmp/zero_cost.csv

For ``--n`` architectures of the table (a uniform subset without replacement, seeded by ``--seed``), each proxy
of ``darts.evaluators.proxies`` is computed on the untrained NB201 network (C=16, N=5 as in NAS-Bench-201; weights seeded
per architecture) with one batch of 64 training images, reused for every network (the papers score on a single
minibatch: Abdelfattah et al. sec. 3, zero-cost-nas nasbench2_pred.py --batch_size 64 --dataload_info 1).
Each row is appended to ``--csv`` as soon as it is computed, so an interrupted run resumes where it stopped;
the script then prints a Markdown table of Spearman's rho and Kendall's tau-b against ``cifar10_test_200ep``.
An undefined proxy value (NaN) ranks last (``darts.evaluators.proxies.as_score``).
"""
from __future__ import annotations

import argparse
import csv
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from darts.data.datasets import image_folder
from darts.evaluators import candidate_seed
from darts.evaluators.base import build_seeded
from darts.evaluators.proxies import as_score, jacov, loss_gradients, naswot, norm_sum, saliency, synflow
from darts.data.search_split import SearchData
from search_spaces.nb201 import NB201Benchmark, NB201Space

TARGET = "cifar10_test_200ep"
PROXIES = ("synflow", "grad_norm", "snip", "jacov", "naswot")
# NAS-Bench-201 CIFAR-10, all architectures: Spearman rho from Abdelfattah et al., ICLR 2021, Table 2; naswot's
# Kendall tau from Mellor et al., ICML 2021 (as quoted by Akhauri et al., EZNAS, NeurIPS 2022)
PUBLISHED = {"synflow": ("0.74", "-"), "grad_norm": ("0.58", "-"), "snip": ("0.58", "-"),
             "jacov": ("0.73", "-"), "naswot": ("-", "0.57")}


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (scipy.stats.rankdata 'average')."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]  # first element of each group of ties
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    result = np.empty(len(values))
    result[order] = (first[group] + last[group]) / 2 + 1
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties in a) (n0 - ties in b)) over all pairs."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    i, j = np.triu_indices(len(a), k=1)  # every pair once
    da = (a[i] > a[j]).astype(int) - (a[i] < a[j])  # signs by comparison: -inf ties with -inf
    db = (b[i] > b[j]).astype(int) - (b[i] < b[j])
    pairs = len(i)
    return float((da * db).sum() / np.sqrt((pairs - (da == 0).sum()) * (pairs - (db == 0).sum())))


def proxy_values(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Every proxy of ``net`` on the batch; grad_norm and snip share one loss gradient (they are the same pass)."""
    weights, grads = loss_gradients(net, x, y)
    return {"synflow": synflow(net, x, y), "grad_norm": norm_sum(grads), "snip": saliency(weights, grads),
            "jacov": jacov(net, x, y), "naswot": naswot(net, x, y)}


def first_batch(root: Path, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch a ZeroCostEvaluator of a search seeded ``seed`` scores on: the first of its weight half."""
    data = SearchData(lambda: image_folder(str(root)), 0.5, seed, torch.device("cpu"))
    return next(iter(data.weight_loader(batch_size, seed)))


def measure(table: NB201Benchmark, space: NB201Space, batch: tuple[torch.Tensor, torch.Tensor], n: int, seed: int,
            out: Path) -> list[dict[str, str]]:
    """The proxies of ``n`` seeded table rows, appended to ``out`` (rows already there are kept, not recomputed)."""
    done = {r["arch"]: r for r in csv.DictReader(out.open())} if out.is_file() else {}
    # a prefix of one seeded permutation: a larger n extends a smaller run
    archs = [table.archs[r] for r in np.random.default_rng(seed).permutation(len(table))[:n]]
    fields = ["index", "arch", TARGET, *PROXIES, "seconds"]
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if not done:
            writer.writeheader()
        for k, arch in enumerate(archs):
            if arch in done:
                continue
            index = table.index_of(arch)
            start = time.perf_counter()
            net = build_seeded(partial(space.build_network, space.parse(arch), 10), candidate_seed(seed, index))
            values = proxy_values(net, *batch)
            row = {"index": index, "arch": arch, TARGET: table.query(arch, TARGET), **values,
                   "seconds": round(time.perf_counter() - start, 3)}
            writer.writerow(row)
            f.flush()
            done[arch] = {key: str(v) for key, v in row.items()}
            print(f"[{k + 1}/{n}] {arch} " + " ".join(f"{p}={values[p]:.4g}" for p in PROXIES), flush=True)
    return [done[arch] for arch in archs]


def markdown(rows: list[dict[str, str]]) -> str:
    """The correlation table of the measured rows next to the published values."""
    target = np.array([float(r[TARGET]) for r in rows])
    lines = [f"| proxy | Spearman rho (N={len(rows)}) | Kendall tau (N={len(rows)}) | published rho | published tau |",
             "|---|---|---|---|---|"]
    for p in PROXIES:
        values = np.array([as_score(float(r[p])) for r in rows])
        lines.append(f"| {p} | {spearman(values, target):.3f} | {kendall(values, target):.3f} | "
                     f"{PUBLISHED[p][0]} | {PUBLISHED[p][1]} |")
    return "\n".join(lines)


def main() -> None:
    """Measure (or resume) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, required=True, help="the NB201 CSV (nb201_accuracies.csv)")
    parser.add_argument("--data", type=Path, required=True, help="an ImageFolder with train/ (cifar10-mini)")
    parser.add_argument("--n", type=int, default=1000, help="architectures (a seeded uniform subset)")
    parser.add_argument("--csv", type=Path, required=True, help="per-architecture values, appended as computed")
    parser.add_argument("--batch-size", type=int, default=64, help="zero-cost-nas nasbench2_pred.py --batch_size 64")
    parser.add_argument("--seed", type=int, default=0, help="seeds the subset, the batch and the initial weights")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on 2 shared cores, 2 threads ran 10x slower, README)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = NB201Space(init_channels=16, cells_per_stage=5)  # NAS-Bench-201 sec. 3: C = 16, N = 5
    table = NB201Benchmark(args.table, space)
    rows = measure(table, space, first_batch(args.data, args.batch_size, args.seed), args.n, args.seed, args.csv)
    print(markdown(rows))


if __name__ == "__main__":
    main()
