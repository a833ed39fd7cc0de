"""Rank correlation of zero-cost proxies with NAS-Bench-201's CIFAR-10 test accuracy, next to the published values.

    python -m benchmarks.zero_cost_correlation --table nb201_accuracies.csv --data cifar10-mini --n 1000 \\
        --csv /tmp/zero_cost.csv

For ``--n`` architectures of the table (a uniform subset without replacement, seeded by ``--seed``), each of the 13
proxies of ``darts.evaluators.proxies`` is computed on the untrained NB201 network (C=16, N=5 as in NAS-Bench-201;
weights seeded per architecture) with one batch of 64 training images, reused for every network (the papers score
on a single minibatch: Abdelfattah et al. sec. 3, zero-cost-nas nasbench2_pred.py --batch_size 64 --dataload_info 1).
Each row is appended to ``--csv`` as soon as it is computed, so an interrupted run resumes where it stopped;
the script then prints a Markdown table of Spearman's rho and Kendall's tau-b against ``cifar10_test_200ep``.
An undefined proxy value (NaN) ranks last (``darts.evaluators.proxies.as_score``).
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from darts.data.datasets import image_folder
from darts.data.search_split import SearchData
from darts.evaluators import candidate_seed
from darts.evaluators.base import build_seeded
from darts.evaluators.proxies import PROXIES as PROXY_FUNCTIONS
from darts.evaluators.proxies import as_score
from darts.evaluators.proxies.jacobian import epe_nas_score, input_jacobian, jacov_score
from darts.evaluators.proxies.saliency import loss_gradients, norm_sum, saliency, signed_saliency
from search_spaces.nb201 import NB201Benchmark, NB201Space

TARGET = "cifar10_test_200ep"
PROXIES = tuple(PROXY_FUNCTIONS)  # all 13, in darts.evaluators.proxies order
# Published Spearman rho on all 15,625 NAS-Bench-201 cells, CIFAR-10: mohsaied/zero-cost-nas
# notebooks/nasbench201_correlations.ipynb, the stored output of its "Table 1" cell (|rho| against the 200-epoch
# test accuracy). naswot's Kendall tau: Mellor et al., ICML 2021 (as quoted by Akhauri et al., EZNAS, NeurIPS 2022).
PUBLISHED = {"synflow": ("0.737", "-"), "grad_norm": ("0.594", "-"), "snip": ("0.596", "-"), "jacov": ("0.731", "-"),
             "naswot": ("-", "0.57"), "fisher": ("0.360", "-"), "grasp": ("0.514", "-")}
SHARED = {"grad_norm", "snip", "plain", "jacov", "epe_nas"}  # computed from one shared pass in proxy_values


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
    """Every proxy of ``net`` on the batch. grad_norm, snip and plain share one loss gradient, jacov and epe_nas one
    input Jacobian (each pair is the same pass); the others run on their own."""
    weights, grads = loss_gradients(net, x, y)
    jacobians, num_classes = input_jacobian(net, x)
    values = {"grad_norm": norm_sum(grads), "snip": saliency(weights, grads), "plain": signed_saliency(weights, grads),
              "jacov": math.nan if jacobians is None else jacov_score(jacobians),
              "epe_nas": math.nan if jacobians is None else epe_nas_score(jacobians, y, num_classes)}
    values.update({name: proxy(net, x, y) for name, proxy in PROXY_FUNCTIONS.items() if name not in SHARED})
    return {name: values[name] for name in PROXIES}


def first_batch(root: Path, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch a ZeroCostEvaluator of a search seeded ``seed`` scores on: the first of its weight half."""
    data = SearchData(lambda: image_folder(str(root)), 0.5, seed)  # the default context: the CPU
    return next(iter(data.weight_loader(batch_size, seed)))


def computed_rows(out: Path, fields: list[str]) -> dict[str, dict[str, str]]:
    """The rows already in ``out`` by architecture; ValueError when its columns are not ``fields`` (a file of another
    version of this benchmark)."""
    if not out.is_file() or out.stat().st_size == 0:
        return {}
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != fields:
            raise ValueError(f"--csv {out} has the columns {reader.fieldnames}, not {fields}: pass a new file")
        return {r["arch"]: r for r in reader}


def measure(table: NB201Benchmark, space: NB201Space, batch: tuple[torch.Tensor, torch.Tensor], n: int, seed: int,
            out: Path) -> list[dict[str, str]]:
    """The proxies of ``n`` seeded table rows, appended to ``out`` (rows already there are kept, not recomputed)."""
    fields = ["index", "arch", TARGET, *PROXIES, "seconds"]
    done = computed_rows(out, fields)
    # a prefix of one seeded permutation: a larger n extends a smaller run
    archs = [table.archs[r] for r in np.random.default_rng(seed).permutation(len(table))[:n]]
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if f.tell() == 0:  # a new file
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
        rho, tau = PUBLISHED.get(p, ("-", "-"))
        lines.append(f"| {p} | {spearman(values, target):.3f} | {kendall(values, target):.3f} | {rho} | {tau} |")
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
