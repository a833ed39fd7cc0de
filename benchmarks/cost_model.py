"""The additive cost model against the count on built networks: every NB201 cell and sampled DARTS genotypes.

    python -m benchmarks.cost_model [--darts 200]

Builds the network of each of the 15,625 NAS-Bench-201 cells (C=16, N=5) and of ``--darts`` sampled DARTS genotypes
(the space's search size, C=16, 8 cells), counts its parameters and FLOPs (``darts.cost.counting``) and compares them
with the cost model's fixed part plus chosen ops (``darts.cost.model``); prints the number of exact matches. About
35 ms per NB201 network on one CPU core (10 minutes in all); the test suite checks a sample.
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
from tqdm import tqdm

from darts.cost.counting import count_network
from darts.cost.model import CostModel
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.nb201.genotype import NUM_EDGES, PRIMITIVES, NB201Genotype


def mismatches(space, genotypes, desc: str) -> tuple[int, int]:
    """(genotypes checked, genotypes whose additive params or FLOPs differ from the built network's count)."""
    model = CostModel.measure(space)
    image = torch.zeros(1, 3, 32, 32)
    wrong = checked = 0
    for genotype in tqdm(genotypes, desc=desc):
        counted = count_network(space.build_network(genotype, 10), image)
        wrong += (model.raw(genotype, "params"), model.raw(genotype, "flops")) != (counted.params, counted.flops)
        checked += 1
    return checked, wrong


def main() -> None:
    """Check every NB201 cell and ``--darts`` DARTS genotypes; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--darts", type=int, default=200, help="sampled DARTS genotypes (default 200)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    cells = [NB201Genotype.from_ops(ops) for ops in itertools.product(PRIMITIVES, repeat=NUM_EDGES)]
    checked, wrong = mismatches(NB201Space(), cells, "NB201 cells")
    print(f"NB201 (C=16, N=5): {checked - wrong:,} of {checked:,} cells equal the built network's count")
    g = torch.Generator().manual_seed(0)
    space = DartsSpace()
    checked, wrong = mismatches(space, [space.sample(g) for _ in range(args.darts)], "DARTS genotypes")
    print(f"DARTS (C=16, 8 cells): {checked - wrong:,} of {checked:,} sampled genotypes equal the built network's count")
    print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
