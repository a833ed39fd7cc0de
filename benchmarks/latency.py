"""How well a latency table predicts the measured latency of a space's networks, on this machine.

    python -m benchmarks.latency --space nb201 --networks 30            # NB201 at C=16, N=5, one CPU thread, batch 1
    python -m benchmarks.latency --space darts --networks 30 --threads 2

The table is built here (``darts.cost.latency.LatencyTable.measure``, the same timer as ``darts-latency``); then
``--networks`` random genotypes of the space (``space.sample``, seeded by ``--seed``) are predicted from it
(``CostModel.cost(genotype)["latency"]``: the fixed part plus the chosen ops' entries) and built and timed end to end
with the same timer (median of ``--repeats`` passes, the networks taken round-robin). Every network is timed twice,
in two such rounds: the Spearman correlation of the two is how far timing noise alone lets a prediction go here.
Prints a Markdown table, Spearman's rho of predicted against measured (first pass), and the mean absolute percentage
error.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from darts.app.latency import build_space
from darts.cost.latency import LatencyTable
from darts.cost.model import CostModel
from darts.cost.timing import Timer
from darts.settings import integer
from search_spaces.base import SearchSpace


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="nb201", help="a costed search space config: nb201 or darts")
    p.add_argument("--networks", type=int, default=30, help="random networks to predict and time")
    p.add_argument("--seed", type=int, default=0, help="seeds the random genotypes")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size of every timed pass")
    p.add_argument("--repeats", type=int, default=50, help="timed passes per entry and per network (median)")
    p.add_argument("--num-classes", type=int, default=10, help="the classifier's outputs")
    p.add_argument("--input-size", type=int, default=32, help="the images' height and width")
    p.add_argument("overrides", nargs="*", help="model.<key>=<value> or search_space.<key>=<value>")
    return p.parse_args(argv)


def unscaled_predictions(table: LatencyTable, predicted: list[float]) -> list[float]:
    """The predictions without the fitted scale: each network's edge-op entries plus the median over the probes of
    their end-to-end latency less their entries (the fixed part of a plain subtraction)."""
    residual = float(np.median(np.subtract(table.info["probe_ms"], table.info["probe_edge_ms"])))
    return [residual + (p - table.fixed) / table.scale for p in predicted]


def measure_networks(space: SearchSpace, genotypes: list, timer: Timer, num_classes: int, input_size: int) -> list[float]:
    """Each genotype's network timed end to end (ms), all of them round-robin (``Timer.each``)."""
    shape = (1, 3, input_size, input_size)
    return timer.each([(space.build_network(g, num_classes).eval(), shape) for g in genotypes])


def report(space: SearchSpace, genotypes: list, predicted: list[float], first: list[float], second: list[float]) -> str:
    """The Markdown table of every network and the summary lines."""
    rows = ["| # | genotype | predicted ms | measured ms | again ms | error % |", "|---|---|---|---|---|---|"]
    for i, g in enumerate(genotypes):
        text = space.to_text(g)
        text = (text if len(text) <= 90 else text[:87] + "...").replace("|", "\\|")  # a pipe would end the cell
        rows.append(f"| {i} | `{text}` | {predicted[i]:.2f} | {first[i]:.2f} | {second[i]:.2f} | "
                    f"{100 * (predicted[i] - first[i]) / first[i]:+.1f} |")
    p, a, b = map(np.asarray, (predicted, first, second))
    rows += ["",
             (f"Spearman rho, predicted vs measured: {spearmanr(p, a).statistic:.3f} "
              f"(vs the second pass: {spearmanr(p, b).statistic:.3f})"),
             f"Spearman rho, measured vs measured again (timing noise): {spearmanr(a, b).statistic:.3f}",
             (f"mean absolute percentage error: {100 * np.mean(np.abs(p - a) / a):.1f} % "
              f"(second pass against first: {100 * np.mean(np.abs(b - a) / a):.1f} %)")]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Build the table, predict and time the random networks, print the comparison."""
    args = parse_args(argv)
    integer("--networks", args.networks, 2)  # a rank correlation needs two
    space = build_space(args.space, args.overrides)
    timer = Timer.of(args.device, args.threads, args.batch, args.repeats)
    table = LatencyTable.measure(space, args.num_classes, args.input_size, timer, progress=True)
    key = table.key
    threads = f", {timer.threads} thread(s)" if timer.threads else ""
    print(f"{args.space} {key['sizes']}, {args.networks} random networks (seed {args.seed}); {key['device']}{threads}, "
          f"batch {timer.batch}, torch {key['torch']}, median of {timer.repeats}")
    print(f"table: {len(table.entries)} entries, fixed part {table.fixed:.3f} ms, scale {table.scale:.3f} (fitted on "
          f"{len(table.info['probe_ms'])} probes), built in {table.info['seconds']:.1f} s")
    model = CostModel.measure(space, args.num_classes, args.input_size, latency=table)
    generator = torch.Generator().manual_seed(args.seed)
    genotypes = [space.sample(generator) for _ in range(args.networks)]
    predicted = [model.cost(g)["latency"] for g in genotypes]
    unscaled = unscaled_predictions(table, predicted)
    start = time.perf_counter()
    first = measure_networks(space, genotypes, timer, args.num_classes, args.input_size)
    second = measure_networks(space, genotypes, timer, args.num_classes, args.input_size)
    print(f"networks timed twice in {time.perf_counter() - start:.1f} s\n")
    print(report(space, genotypes, predicted, first, second))
    print(f"unscaled (scale 1, fixed part the probes' median residual): mean absolute percentage error "
          f"{100 * np.mean(np.abs(np.asarray(unscaled) - first) / first):.1f} %")


if __name__ == "__main__":
    main()
