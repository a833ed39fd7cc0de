"""Discrete search: space sampling and mutation, random search, regularized evolution, the three evaluators,
the run's history, resume and worker pool, and end-to-end runs through train_search.py."""
from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from PIL import Image

import darts.app.search as train_search
from conftest import Done, ROOT, history_without_timing, read_json, started, tabular_run, tensorboard_tags
from darts.data.datasets import Datasets, ImageData
from darts.evaluators import SupernetEvaluator, TabularEvaluator, TrainEvaluator
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY, DiscreteRun
from darts.data.search_split import SearchData
from search_spaces.darts.genotype import Genotype
from darts.strategies.discrete.evolution import RegularizedEvolution
from darts.strategies.discrete.random_search import RandomSearch
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.nb201.genotype import EDGES, PRIMITIVES, parse_arch

CHI2_999 = {4: 18.467, 6: 22.458}  # chi-square quantile 0.999 by degrees of freedom


def chi_square(counts: list[int]) -> float:
    """Pearson's statistic of counts against the uniform distribution."""
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def test_nb201_sampling_is_uniform_over_every_op_on_every_edge():
    """5,000 NB201 samples use every op on every edge with frequencies passing a chi-square test at 0.001."""
    space, g = NB201Space(), torch.Generator().manual_seed(0)
    samples = [space.sample(g).ops for _ in range(5000)]
    for e in range(len(EDGES)):
        counts = Counter(ops[e] for ops in samples)
        assert set(counts) == set(PRIMITIVES)
        assert chi_square([counts[op] for op in PRIMITIVES]) < CHI2_999[4]


def test_darts_sampling_covers_every_op_and_input():
    """2,000 DARTS samples use each non-none op uniformly at every pair, and every input of every node."""
    space, g = DartsSpace(), torch.Generator().manual_seed(0)
    samples = [space.sample(g) for _ in range(2000)]
    ops = space.primitives[1:]
    for cell in ("normal", "reduce"):
        for k in range(8):
            counts = Counter(getattr(s, cell)[k][0] for s in samples)
            assert chi_square([counts[op] for op in ops]) < CHI2_999[6]
            assert {getattr(s, cell)[k][1] for s in samples} == set(range(k // 2 + 2))
        assert all(getattr(s, cell)[k][1] != getattr(s, cell)[k + 1][1] for s in samples for k in range(0, 8, 2))


@pytest.mark.parametrize("space", [NB201Space(), DartsSpace()], ids=["nb201", "darts"])
def test_mutation_is_valid_and_changes_exactly_one_place(space):
    """A mutant is a valid genotype of the same type that differs from its parent in exactly one edge (op or input)."""
    g = torch.Generator().manual_seed(1)
    kinds = Counter()
    for _ in range(300):
        parent = space.sample(g)
        child = space.mutate(parent, g)
        assert type(child) is type(parent) and space.parse(space.to_text(child)) == child
        pairs = ([(op, j) for node in parent for op, j in node], [(op, j) for node in child for op, j in node]) \
            if isinstance(space, NB201Space) else (parent.normal + parent.reduce, child.normal + child.reduce)
        diffs = [(a, b) for a, b in zip(*pairs) if a != b]
        assert len(diffs) == 1
        (op_a, in_a), (op_b, in_b) = diffs[0]
        kinds["op" if in_a == in_b else "input"] += 1
        assert (op_a == op_b) != (in_a == in_b)
    assert kinds["op"] > 0 and (kinds["input"] > 0) == isinstance(space, DartsSpace)


def scores_of(genotypes) -> list[float]:
    """A deterministic fake score per NB201 genotype: more conv edges score higher."""
    return [float(sum(op.startswith("nor_conv") for op in g.ops)) + 0.01 * g.ops.count("skip_connect")
            for g in genotypes]


def test_random_search_returns_the_first_best_of_budget_samples():
    """Random search proposes all `budget` samples at once and returns the first one of highest score."""
    rs = RandomSearch(NB201Space(), budget=50, seed=3)
    genotypes = rs.ask()
    assert len(genotypes) == 50
    rs.tell(scores_of(genotypes))
    scores = scores_of(genotypes)
    assert rs.done and rs.best() == (genotypes[scores.index(max(scores))], max(scores))


def test_evolution_removes_the_oldest_member():
    """After every generation the population is the last `population` evaluated genotypes, oldest first."""
    rea = RegularizedEvolution(NB201Space(), budget=40, population=5, sample=2, generation=3, seed=0)
    while not rea.done:
        genotypes = rea.ask()
        assert 1 <= len(genotypes) <= 3
        rea.tell(scores_of(genotypes))
        assert list(rea.population) == rea.history[-5:]
    assert len(rea.history) == 40


def test_evolution_mutates_the_tournament_winner():
    """With a tournament far larger than the population, every child is one mutation away from the best member."""
    def index(g) -> float:  # a distinct score per genotype: its index in the space
        return float(sum(PRIMITIVES.index(op) * 5 ** e for e, op in enumerate(g.ops)))
    rea = RegularizedEvolution(NB201Space(), budget=30, population=4, sample=200, seed=1)
    while not rea.done:
        best = max(rea.population, key=lambda m: m[1])[0] if len(rea.population) == 4 else None
        (child,) = rea.ask()
        if best is not None:
            assert sum(a != b for a, b in zip(best.ops, child.ops)) == 1
        rea.tell([index(child)])


def test_evolution_beats_random_search_on_a_fake_objective():
    """On a smooth objective, evolution's best after 60 evaluations beats random search's on average over seeds."""
    def run(strategy):
        while not strategy.done:
            strategy.tell(scores_of(strategy.ask()))
        return strategy.best()[1]
    rea = np.mean([run(RegularizedEvolution(NB201Space(), budget=60, seed=s)) for s in range(20)])
    rs = np.mean([run(RandomSearch(NB201Space(), budget=60, seed=s)) for s in range(20)])
    assert rea > rs


@pytest.mark.parametrize("kwargs, match", [({"budget": 0}, "budget"), ({"population": 0}, "population"),
                                           ({"sample": 0}, "sample"), ({"generation": 0}, "generation")])
def test_evolution_rejects_bad_settings(kwargs, match):
    """Non-positive budget, population, tournament or generation sizes are refused, naming the setting."""
    with pytest.raises(ValueError, match=match):
        RegularizedEvolution(NB201Space(), **kwargs)


# ---------------------------------------------------------------- evaluators


def test_tabular_evaluator_scores_a_validation_column(nb201_csv):
    """The tabular score is the table's validation value; test columns and the DARTS space are refused."""
    space = NB201Space()
    ev = TabularEvaluator(space, path=str(nb201_csv))
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    result = ev.evaluate(parse_arch(arch), 0)
    assert result.score == ev.benchmark.query(arch, "cifar10_valid_12ep") and result.cost == 0.0
    assert ev.report(parse_arch(arch))["cifar10_test_200ep"] == ev.benchmark.query(arch, "cifar10_test_200ep")
    with pytest.raises(ValueError, match="validation column"):
        TabularEvaluator(space, path=str(nb201_csv), column="cifar10_test_200ep")
    with pytest.raises(ValueError, match="not a genotype of DartsSpace.*another search space"):
        TabularEvaluator(DartsSpace(), path=str(nb201_csv))


@pytest.fixture(scope="module")
def timed_csv(nb201_csv, tmp_path_factory) -> Path:
    """The NB201 table with a recorded training time of 2 s for each cifar10_valid_12ep lookup."""
    lines = nb201_csv.read_text().splitlines()
    path = tmp_path_factory.mktemp("timed") / "timed.csv"
    path.write_text("\n".join([lines[0] + ",cifar10_valid_12ep_time"] + [line + ",2.0" for line in lines[1:]]) + "\n")
    return path


def test_tabular_fidelity_is_a_column_and_cost_its_recorded_time(timed_csv):
    """A fidelity picks another validation column; a lookup costs the column's recorded time (<column>_time) where
    the table has one, else 0 s; a test column is refused as a fidelity too."""
    space = NB201Space()
    ev = TabularEvaluator(space, path=str(timed_csv))
    genotype = space.sample(torch.Generator().manual_seed(0))
    default, other = ev.evaluate(genotype, 0), ev.evaluate(genotype, 0, fidelity="cifar100_valid_12ep")
    assert (default.score, default.cost) == (ev.benchmark.query(genotype, "cifar10_valid_12ep"), 2.0)
    assert (other.score, other.cost) == (ev.benchmark.query(genotype, "cifar100_valid_12ep"), 0.0)
    with pytest.raises(ValueError, match="validation column"):
        ev.evaluate(genotype, 0, fidelity="cifar10_test_200ep")


@pytest.mark.parametrize("make", [partial(RandomSearch, budget=50, seed=1, time_budget=7.0),
                                  partial(RegularizedEvolution, budget=50, seed=1, time_budget=7.0)],
                         ids=["random", "evolution"])
def test_time_budget_stops_the_search_when_the_cost_is_spent(timed_csv, tmp_path, make):
    """With 2 s per lookup and a 7 s time budget, the search stops after 4 evaluations (8 s spent) of its 50."""
    result = tabular_run(tmp_path, timed_csv, make).run()
    assert result["evaluations"] == 4 and result["evaluation_cost"] == 8.0


@pytest.fixture(scope="module")
def mini_images(cifar_mini) -> Datasets:
    """24 real CIFAR-10 training images per class (240 in all), read directly for fast in-process tests."""
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in (cifar_mini / "train").iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.png"))[:24]:
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    classes = tuple(sorted(p.name for p in (cifar_mini / "train").iterdir() if p.is_dir()))
    data = ImageData(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels),
                     classes, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    return Datasets(data, data)


def tiny_nb201() -> NB201Space:
    """A 4-channel, one-cell-per-stage NB201 space (fast on CPU)."""
    return NB201Space(init_channels=4, cells_per_stage=1)


def test_train_evaluator_is_seeded_by_candidate(mini_images):
    """Training from scratch gives an accuracy in [0, 100] and a positive cost; the same index repeats its score."""
    data = SearchData(lambda: mini_images, 0.5, 0)
    ev = TrainEvaluator(tiny_nb201(), data, epochs=2, batch_size=16, steps_per_epoch=2, eval_batches=2, seed=0)
    ev.prepare()
    genotype = tiny_nb201().sample(torch.Generator().manual_seed(0))
    first, again, other = ev.evaluate(genotype, 3), ev.evaluate(genotype, 3), ev.evaluate(genotype, 4)
    assert 0.0 <= first.score <= 100.0 and first.cost > 0
    assert {"train_acc", "train_loss", "valid_loss"} <= first.metrics.keys()
    assert (first.score, first.metrics) == (again.score, again.metrics)
    assert first.metrics["train_loss"] != other.metrics["train_loss"]
    # a fidelity is a number of epochs: one epoch is the first epoch of the two-epoch run, with its own schedule
    assert ev.evaluate(genotype, 3, fidelity=1).metrics["train_loss"] != first.metrics["train_loss"]
    with pytest.raises(ValueError, match="epochs >= 1"):
        ev.evaluate(genotype, 3, fidelity=0)


def test_supernet_evaluator_resumes_training_exactly(mini_images):
    """Supernet training stopped after epoch 1 and resumed from its state ends with the uninterrupted weights."""
    def evaluator(epochs: int) -> SupernetEvaluator:
        data = SearchData(lambda: mini_images, 0.5, 0)
        return SupernetEvaluator(DartsSpace(init_channels=4, layers=2), data, epochs=epochs, batch_size=16,
                                 steps_per_epoch=2, eval_batches=2, seed=0)
    full = evaluator(2)
    full.prepare()
    first = evaluator(1)
    first.prepare()
    resumed = evaluator(2)
    resumed.load_state_dict(first.state_dict())
    resumed.prepare()
    for a, b in zip(full.supernet.state_dict().values(), resumed.supernet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    genotype = DartsSpace().sample(torch.Generator().manual_seed(0))
    scored = full.evaluate(genotype, 0)
    assert scored.score == resumed.evaluate(genotype, 9).score and scored.cost > 0


# ---------------------------------------------------------------- the run: history, pool, resume


@pytest.mark.parametrize("make", [partial(RegularizedEvolution, budget=40, generation=4, seed=5),
                                  partial(RandomSearch, budget=40, seed=5)], ids=["evolution", "random"])
def test_parallel_and_serial_runs_write_the_same_history(nb201_csv, tmp_path, make):
    """Scoring each generation with 4 worker threads gives the serial run's history and result."""
    serial = tabular_run(tmp_path / "serial", nb201_csv, make).run()
    parallel = tabular_run(tmp_path / "parallel", nb201_csv, make, workers=4).run()
    assert history_without_timing(tmp_path / "serial") == history_without_timing(tmp_path / "parallel")
    assert len(history_without_timing(tmp_path / "serial")) == 40
    assert (serial["genotype"], serial["score"]) == (parallel["genotype"], parallel["score"])


def test_parallel_training_matches_serial(mini_images, tmp_path):
    """Training candidates in 2 threads gives bit-identical scores to training them one after another."""
    def run(name: str, workers: int) -> list[dict]:
        space = tiny_nb201()
        data = SearchData(lambda: mini_images, 0.5, 0)
        evaluator = partial(TrainEvaluator, epochs=1, batch_size=16, steps_per_epoch=2, eval_batches=2, workers=workers)
        DiscreteRun(tmp_path / name, space, data, partial(RandomSearch, budget=4, seed=0), evaluator).run()
        return history_without_timing(tmp_path / name)
    assert run("serial", 1) == run("parallel", 2)


def test_resume_continues_an_interrupted_history(nb201_csv, tmp_path):
    """A run cut after 17 evaluations (mid-line) and resumed ends with the uninterrupted run's history and result."""
    make = partial(RegularizedEvolution, budget=40, seed=2)
    full = tabular_run(tmp_path / "full", nb201_csv, make).run()
    tabular_run(tmp_path / "cut", nb201_csv, make).run()
    lines = (tmp_path / "cut" / HISTORY).read_text().splitlines(keepends=True)
    (tmp_path / "cut" / HISTORY).write_text("".join(lines[:17]) + lines[17][:25])
    (tmp_path / "cut" / "result.json").unlink()
    resumed = tabular_run(tmp_path / "cut", nb201_csv, make)
    resumed.resume()
    assert len(resumed.records) == 17
    assert resumed.run() == {**full, "elapsed": read_json(tmp_path / "cut" / "result.json")["elapsed"]}
    assert history_without_timing(tmp_path / "cut") == history_without_timing(tmp_path / "full")


def test_resume_refuses_a_history_from_another_seed(nb201_csv, tmp_path):
    """Resuming with a different seed stops with a clear error instead of mixing two searches."""
    tabular_run(tmp_path / "run", nb201_csv, partial(RegularizedEvolution, budget=12, seed=0)).run()
    other = tabular_run(tmp_path / "run", nb201_csv, partial(RegularizedEvolution, budget=12, seed=1))
    other.resume()
    with pytest.raises(ValueError, match="does not match"):
        other.run()


# ---------------------------------------------------------------- train_search.py end to end

DISCRETE = ("random", "evolution")


@pytest.mark.parametrize("evaluator", sorted(p.stem for p in (ROOT / "darts" / "conf" / "evaluator").glob("*.yaml")))
@pytest.mark.parametrize("strategy", DISCRETE)
def test_discrete_configs_compose_with_every_evaluator(strategy, evaluator, tmp_path):
    """Each discrete strategy composes with each evaluator and runs as a discrete search (the run kind follows the
    strategy's class; a gradient strategy's is the bilevel search); without an evaluator it is refused."""
    def kind(cfg):
        cls = get_object(cfg.strategy._target_)
        return next(make for base, make in train_search.RUN_KINDS if issubclass(cls, base))

    with initialize_config_dir(str(ROOT / "darts" / "conf"), version_base="1.3"):
        cfg = compose("search", overrides=[f"strategy={strategy}", f"evaluator={evaluator}", "evaluator.path=x"]
                      if evaluator == "tabular" else [f"strategy={strategy}", f"evaluator={evaluator}"])
        assert kind(cfg) is train_search.discrete_run and cfg.strategy.seed == cfg.seed
        assert kind(compose("search", overrides=["strategy=darts"])) is train_search.gradient_run
    with pytest.raises(ValueError, match="evaluator=<name>"):
        DiscreteRun(tmp_path, NB201Space(), None, instantiate(cfg.strategy, _partial_=True))


def start(run_dir: Path, *overrides: str) -> Done:
    """train_search.py in ``run_dir``, run in this process (``conftest.started``)."""
    return started("train_search.py", f"hydra.run.dir={run_dir}", "progress=false", *overrides)


def finish(proc: Done) -> str:
    """Wait for a run; fail with its output if it failed."""
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def entry_runs(cifar_mini, nb201_csv, tmp_path_factory):
    """The end-to-end runs: DARTS-space evolution (train), random search (supernet), tabular."""
    base = tmp_path_factory.mktemp("entry")
    real = ["dataset=imagefolder", f"dataset.root={cifar_mini}", "model.init_channels=4", "model.layers=2",
            "steps_per_epoch=2", "batch_size=16"]
    procs = {
        "train": start(base / "train", "strategy=evolution", "evaluator=train", *real, "evaluator.epochs=1",
                       "evaluator.batch_size=16", "evaluator.eval_batches=2", "evaluator.workers=2",
                       "strategy.budget=3", "strategy.population=2", "strategy.sample=2", "strategy.generation=2"),
        "supernet": start(base / "supernet", "strategy=random", "evaluator=supernet", *real, "evaluator.epochs=1",
                          "evaluator.eval_batches=2", "strategy.budget=3"),
        # dataset.download=false at a missing root: the tabular run must not touch the dataset at all
        "tabular": start(base / "tabular", "search_space=nb201", "strategy=evolution", "evaluator=tabular",
                         f"evaluator.path={nb201_csv}", "dataset.root=/nonexistent", "dataset.download=false",
                         "strategy.budget=20", "seed=7"),
    }
    yield base, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name, genotype_type", [("train", Genotype), ("supernet", Genotype)])
def test_entry_point_runs_write_history_result_and_tensorboard(entry_runs, name, genotype_type):
    """evaluator=train (evolution) and evaluator=supernet (random) runs in the DARTS space on real images write
    history.jsonl, result.json, the final genotype and TensorBoard curves."""
    base, procs = entry_runs
    finish(procs[name])
    run = base / name
    result = read_json(run / "result.json")
    assert isinstance(DartsSpace().parse(result["genotype"]), genotype_type)
    records = read_jsonl(run / HISTORY)
    assert [r["index"] for r in records] == [0, 1, 2] and result["evaluations"] == 3
    assert result["score"] == max(r["score"] for r in records) and all(r["cost"] > 0 for r in records)
    assert (run / "genotype.txt").is_file() and (run / "checkpoint.pt").is_file()
    scalars = set(tensorboard_tags(run)["scalars"])
    assert {"search/score", "search/best_score", "search/best_score_by_time"} <= scalars
    if name == "supernet":
        assert {"supernet/train_loss", "supernet/train_acc"} <= scalars


def test_tabular_entry_run_loads_no_dataset_and_resumes(entry_runs, nb201_csv):
    """A tabular run needs no dataset, reports the final genotype's test accuracies, and `resume=<dir>` with a
    larger budget extends it to the history of a run given that budget from the start."""
    base, procs = entry_runs
    finish(procs["tabular"])
    run = base / "tabular"
    result = read_json(run / "result.json")
    assert result["benchmark"]["cifar10_test_200ep"] > 0 and result["evaluations"] == 20
    finish(start(run, f"resume={run}", "strategy.budget=30"))  # as written: the run's own config has the key
    finish(start(base / "fresh", "search_space=nb201", "strategy=evolution", "evaluator=tabular",
                 f"evaluator.path={nb201_csv}", "strategy.budget=30", "seed=7"))
    assert history_without_timing(run) == history_without_timing(base / "fresh")
    assert read_json(run / "result.json")["evaluations"] == 30
    assert json.loads((run / HISTORY).read_text().splitlines()[-1])["index"] == 29
