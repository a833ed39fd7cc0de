"""Tuning benchmarks (docs/tuning.md): the study machinery of ``hydra/sweeper=optuna`` on two problems.

    python -m benchmarks.tuning nb201 --table ../shared/data/nb201/nb201_accuracies.csv --seeds 10 --trials 30
    python -m benchmarks.tuning retrain --data ../shared/data/cifar10-mini --trials 8 --epochs 4 --steps 10

nb201: TPE, GP (Bayesian optimisation with a Gaussian process) and random sampling tune regularized evolution's own
settings, its population P in [5, 60] and tournament sample size S in [2, 25] (S above P is run as S = P), on the
NAS-Bench-201 table. Each trial is one 100-evaluation evolution (ask/tell, the cells scored by the table's
``cifar10_valid_12ep``, as NB201's R-EA), whose value is the best validation accuracy it found; every trial of a study
searches with the study's seed, so trials differ by their settings only. The studies run through
``darts.tuning.study.Study`` in an SQLite storage, as the sweeper drives them, with the search called in this process
(no process per trial). Per study, the test accuracy (``cifar10_test_200ep``) of the cell the best trial found; mean
and std over the seeds, next to evolution's default settings (P=10, S=3, conf/strategy/evolution.yaml) on the same
seeds and the best cell of the table.

retrain: the retraining-recipe preset (``+tune=retrain_darts``: lr, weight decay and drop-path, scored on a held-out
10% of the training set) through the sweeper itself (``train_final.py -m``, basic launcher) on a small DARTS network
(DARTS_V2, 8 channels, 5 cells) over the images in ``--data``, with the median pruner and without it (same sampler
seed); wall time, epochs run and the best held-out accuracy of each sweep.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from darts.runs.reader import Run
from darts.strategies.discrete.evolution import RegularizedEvolution
from darts.tuning.algorithms import sampler
from darts.tuning.space import Int
from darts.tuning.study import Objective, OptunaProposer, Study
from search_spaces.nb201 import NB201Benchmark, NB201Space

ROOT = Path(__file__).resolve().parents[1]
SIGNAL, TEST = "cifar10_valid_12ep", "cifar10_test_200ep"
SPACE = {"population": Int(5, 60), "sample": Int(2, 25)}
SAMPLERS = ("tpe", "gp", "random")
FRESH_SEEDS = range(1000, 1050)  # searches with a study's chosen settings on seeds it never saw


class Table:
    """The NB201 table's search signal and test accuracy by cell text."""

    def __init__(self, path: Path):
        self.space = NB201Space()
        table = NB201Benchmark(path, self.space)
        self.row = {text: i for i, text in enumerate(table.archs)}
        self.valid, self.test = table.values(SIGNAL), table.values(TEST)

    def evolve(self, population: int, sample: int, seed: int, budget: int = 100) -> tuple[float, float]:
        """One regularized evolution of ``budget`` evaluations: the best cell's (validation, test) accuracy."""
        strategy = RegularizedEvolution(self.space, budget=budget, population=population,
                                        sample=min(sample, population), seed=seed)
        while not strategy.done:
            strategy.tell([float(self.valid[self.row[self.space.to_text(g)]]) for g in strategy.ask()])
        best = self.row[self.space.to_text(strategy.best()[0])]
        return float(self.valid[best]), float(self.test[best])


def study(table: Table, name: str, seed: int, trials: int, storage: str) -> dict[str, Any]:
    """One study of ``trials`` evolutions proposed by sampler ``name``: its best trial's settings and accuracies."""
    proposer = OptunaProposer(lambda s: sampler(name, s, SPACE), seed)
    tuned = Study(SPACE, [Objective(SIGNAL, "maximize")], storage, f"{name}-seed{seed}", proposer)
    found = {}
    start = time.time()
    while batch := tuned.batch(trials, 1):
        for trial in batch:
            found[trial.number] = table.evolve(trial.params["population"], trial.params["sample"], seed)
            tuned.tell(trial.number, "complete", [found[trial.number][0]])
    best = tuned.study.best_trial
    return {"sampler": name, "seed": seed, "params": best.params, "valid": found[best.number][0],
            "test": found[best.number][1], "seconds": time.time() - start,
            "fresh": fresh(table, best.params["population"], best.params["sample"])}


def fresh(table: Table, population: int, sample: int) -> float:
    """The mean test accuracy of one 100-evaluation search with these settings over seeds no study used."""
    return float(np.mean([table.evolve(population, sample, seed)[1] for seed in FRESH_SEEDS]))


def nb201(args: argparse.Namespace) -> None:
    """The NB201 benchmark (module docstring): ``nb201.json`` in ``--out`` and a Markdown table."""
    table = Table(args.table)
    db = args.out / "nb201.db"
    db.unlink(missing_ok=True)  # fresh studies (the same storage would resume them)
    rows = [study(table, name, seed, args.trials, f"sqlite:///{db}") for name in SAMPLERS for seed in range(args.seeds)]
    rows += [{"sampler": "defaults (P=10, S=3)", "seed": seed, "params": {"population": 10, "sample": 3},
              **dict(zip(("valid", "test"), table.evolve(10, 3, seed))), "fresh": fresh(table, 10, 3)}
             for seed in range(args.seeds)]
    (args.out / "nb201.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"| settings from | test accuracy of the best trial's cell (mean ± std, {args.seeds} seeds) | its "
          f"validation accuracy | P chosen (median) | S chosen (median) | one search with the chosen settings, "
          f"test accuracy ({len(FRESH_SEEDS)} new seeds; mean ± std over studies) | seconds per study |")
    print("|---|---|---|---|---|---|---|")
    for name in [*SAMPLERS, rows[-1]["sampler"]]:
        mine = [r for r in rows if r["sampler"] == name]
        test, valid = np.array([r["test"] for r in mine]), np.array([r["valid"] for r in mine])
        seconds, again = np.mean([r.get("seconds", np.nan) for r in mine]), np.array([r["fresh"] for r in mine])
        print(f"| {name} | {test.mean():.2f} ± {test.std(ddof=1):.2f} | {valid.mean():.2f} ± {valid.std(ddof=1):.2f} "
              f"| {np.median([r['params']['population'] for r in mine]):.0f} "
              f"| {np.median([r['params']['sample'] for r in mine]):.0f} | {again.mean():.2f} ± {again.std(ddof=1):.2f} "
              f"| {seconds:.1f} |")
    print(f"\nbest cell of the table: {table.test.max():.2f} test, {table.valid.max():.2f} validation")


def sweep(args: argparse.Namespace, pruner: str) -> dict[str, Any]:
    """One retraining sweep through the sweeper (``pruner``: median or null): wall time, epochs, best accuracy."""
    out = args.out / f"retrain-{pruner}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh study (the same storage would resume it)
    command = [sys.executable, str(ROOT / "train_final.py"), "-m", "+tune=retrain_darts", "genotype=DARTS_V2",
               "dataset=imagefolder", f"dataset.root={args.data}", f"epochs={args.epochs}", "model.init_channels=8",
               "model.layers=5", "batch_size=64", f"steps_per_epoch={args.steps}", "auxiliary_weight=0", "cutout=0",
               "device=cpu", "progress=false", f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.pruner={pruner}",
               "hydra.sweeper.pruner_args={n_startup_trials: 3, n_warmup_steps: 1}", f"hydra.sweep.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread: tiny networks run fastest so on a shared CPU
    start, cpu = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, env=env)
    seconds, used = time.time() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime  # steadier than wall time when shared
    summary = json.loads((out / "study.json").read_text())
    results = [Run(out / t["run_dir"], {}).result for t in summary["trials"]]
    epochs = sum(r["pruned_after_epoch"] + 1 if r.get("status") == "pruned" else r["epochs"] for r in results)
    return {"pruner": pruner, "seconds": seconds, "cpu_seconds": cpu_seconds, "epochs": epochs, "states": summary["states"],
            "best": summary["best_trials"][0]["values"][0], "params": summary["best_trials"][0]["params"]}


def retrain(args: argparse.Namespace) -> None:
    """The retraining benchmark (module docstring): ``retrain.json`` in ``--out`` and a Markdown table."""
    rows = [sweep(args, pruner) for pruner in ("median", "null")]
    (args.out / "retrain.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| pruner | wall time (s) | CPU time (s) | epochs run | trials | best held-out accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(r["states"].items()))
        print(f"| {r['pruner']} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['epochs']} | {states} "
              f"| {r['best']:.2f} |")


def main() -> None:
    """``python -m benchmarks.tuning nb201|retrain ...``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=("nb201", "retrain"))
    parser.add_argument("--table", type=Path, default=ROOT.parent / "shared/data/nb201/nb201_accuracies.csv")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/cifar10-mini")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="retrain: batches per epoch (train and held-out)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuning"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    nb201(args) if args.which == "nb201" else retrain(args)


if __name__ == "__main__":
    main()
