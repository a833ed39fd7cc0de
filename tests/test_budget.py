"""Discrete search under a budget (darts/strategies/discrete/constraint.py, objectives.py): no strategy proposes an
infeasible genotype and each counts what it rejected; multi-objective strategies keep a non-dominated front and its
hypervolume; bad settings are one-line errors; a run records the genotype's cost, the front per generation and
resumes a constrained and a multi-objective search exactly."""
from __future__ import annotations

import json
import zlib
from functools import partial

import pytest
import torch

from conftest import ask_until_done, history_without_timing, read_json
from darts.evaluators import TabularEvaluator
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY, PARETO, DiscreteRun
from darts.strategies.discrete.bananas import Bananas
from darts.strategies.discrete.bohb import BOHB
from darts.strategies.discrete.constraint import Constraint
from darts.strategies.discrete.evolution import RegularizedEvolution
from darts.strategies.discrete.hyperband import Hyperband
from darts.strategies.discrete.objectives import Objectives
from darts.strategies.discrete.pareto import dominates
from darts.strategies.discrete.pso import ParticleSwarm
from darts.strategies.discrete.random_search import RandomSearch
from search_spaces.nb201 import NB201Space

LIMIT = 10.0  # toy flops: about half of the NB201 cells are within it
STRATEGIES = {  # small settings: each spends its budget in well under a second
    "random": partial(RandomSearch, budget=30),
    "evolution": partial(RegularizedEvolution, budget=40, population=8, sample=3),
    "bo": partial(Bananas, budget=25, initial=5, k=5, candidates=20, members=2, layers=2, width=8, epochs=5),
    "pso": partial(ParticleSwarm, budget=40, swarm=8),
}


def toy_cost(genotype) -> dict[str, float]:
    """A toy cost of an NB201 cell: 'flops' 9 per 3x3 conv and 1 per 1x1 conv, 'params' its conv edges."""
    ops = genotype.ops
    return {"flops": 9.0 * ops.count("nor_conv_3x3") + ops.count("nor_conv_1x1"),
            "params": float(sum(op.startswith("nor_conv") for op in ops))}


def conv_score(genotype) -> float:
    """A score that rewards the costly ops (so a search presses against the limit), plus a checksum tie-breaker."""
    ops = genotype.ops
    return 10.0 * ops.count("nor_conv_3x3") + 5.0 * ops.count("nor_conv_1x1") + \
        (zlib.crc32(str(genotype).encode()) % 997) / 997


class Recorded:
    """``toy_cost`` that records whether each genotype it measured was within ``LIMIT``."""

    def __init__(self):
        self.infeasible = 0

    def __call__(self, genotype) -> dict[str, float]:
        cost = toy_cost(genotype)
        self.infeasible += cost["flops"] > LIMIT
        return cost


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_infeasible_genotype_is_proposed_and_rejections_are_counted(name):
    """Under constraint.flops, every proposal of random search, evolution, BO and PSO is feasible, some drawn genotypes
    were not (the score pushes towards costly cells), and ``rejected`` counts exactly the infeasible ones measured."""
    for seed in range(3):
        cost = Recorded()
        strategy = STRATEGIES[name](NB201Space(), seed=seed, constraint=Constraint({"flops": LIMIT}, cost))
        proposals = [g for generation in ask_until_done(strategy, conv_score) for g in generation]
        assert len(proposals) == strategy.budget
        assert all(toy_cost(g)["flops"] <= LIMIT for g in proposals)
        assert strategy.constraint.rejected == cost.infeasible > 0
        assert strategy.best()[0] in proposals


def test_a_mutation_at_the_limit_is_repaired_by_further_mutations():
    """From a parent at the limit (one 3x3 and one 1x1 conv: toy flops 10), nearly every mutation is repaired within
    its 20 steps, every repaired one is feasible and differs from the parent; some differ in two or more edges (a costly op traded for another), which single mutations
    cannot do without leaving the feasible set."""
    space = NB201Space()
    parent = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    strategy = RandomSearch(space, budget=1, seed=0, constraint=Constraint({"flops": LIMIT}, toy_cost))
    children = [child for _ in range(300) if (child := strategy._mutate(parent)) is not None]  # None: 20 steps failed
    assert len(children) > 250
    edits = [sum(a != b for a, b in zip(parent.ops, child.ops)) for child in children]
    assert all(toy_cost(c)["flops"] <= LIMIT for c in children) and min(edits) >= 1 and max(edits) >= 2
    assert strategy.constraint.rejected > 0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_the_default_objective_and_no_constraint_change_nothing(name):
    """Passing ``objectives=[accuracy]`` and an empty constraint explicitly gives the history of passing neither."""
    histories = []
    for kwargs in ({}, {"constraint": Constraint({"flops": None}, toy_cost), "objectives": Objectives(["accuracy"])}):
        strategy = STRATEGIES[name](NB201Space(), seed=4, **kwargs)
        ask_until_done(strategy, conv_score)
        histories.append(strategy.history)
    assert histories[0] == histories[1]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_multi_objective_search_keeps_a_non_dominated_front(name):
    """With objectives [accuracy, flops], the front is the non-dominated set of all evaluations (each evaluated point
    is on it, equal to a front point or dominated by one) and its hypervolume is positive."""
    objectives = Objectives(["accuracy", "flops"], toy_cost, {"flops": 60})
    strategy = STRATEGIES[name](NB201Space(), seed=1, objectives=objectives)
    ask_until_done(strategy, conv_score)
    front = [objectives.point(g, s) for g, s in strategy.front()]
    points = [objectives.point(g, s) for g, s in strategy.history]
    assert len(front) > 1 and len(set(front)) == len(front)
    assert all(not dominates(q, p) for p in front for q in points)
    assert all(any(f == p or dominates(f, p) for f in front) for p in points)
    assert objectives.hypervolume(strategy.front()) == objectives.hypervolume(strategy.history) > 0


def test_multi_objective_evolution_finds_a_larger_hypervolume_on_the_table(nb201_csv):
    """On the NB201 table with exact FLOPs, evolution ranking by NSGA-II's crowded comparison has a larger mean
    hypervolume of accuracy and FLOPs after 100 evaluations (10 seeds) than evolution ranking by accuracy alone."""
    from darts.cost.model import CostModel
    from darts.data.tabular import Table

    space = NB201Space()
    table = Table(nb201_csv, space)
    objectives = Objectives(["accuracy", "flops"], CostModel.measure(space).cost, {"flops": 220.2})
    volumes = {}
    for multi in (False, True):
        strategies = [RegularizedEvolution(space, budget=100, seed=seed, **({"objectives": objectives} if multi else {}))
                      for seed in range(10)]
        for strategy in strategies:
            ask_until_done(strategy, lambda g: table.query(g, "cifar10_valid_12ep"))
        volumes[multi] = sum(objectives.hypervolume(s.history) for s in strategies) / len(strategies)
    assert volumes[True] > volumes[False] + 100  # about 17,390 against 17,250 (% x M FLOPs)


@pytest.mark.parametrize("limits, match", [
    ({"flop": 20}, r"constraint\.flop is not a cost metric; choose one of params, flops, latency"),
    ({"flops": 0}, r"constraint\.flops=0 is not valid"),
    ({"flops": "a lot"}, r"constraint\.flops='a lot' is not valid")])
def test_bad_constraints_are_one_line_errors(limits, match):
    """An unknown metric names the valid ones; a non-positive or non-numeric limit is refused."""
    with pytest.raises(ValueError, match=match) as err:
        Constraint(limits, toy_cost)
    assert "\n" not in str(err.value)


def test_constraint_errors_name_the_constraint():
    """A limit without a cost model, a metric the cost model does not give and an unsatisfiable limit each name the
    constraint in one line."""
    with pytest.raises(ValueError, match=r"constraint\.flops=20 needs a cost model"):
        Constraint({"flops": 20})
    strategy = RandomSearch(NB201Space(), budget=5, constraint=Constraint({"latency": 3}, toy_cost))
    with pytest.raises(ValueError, match=r"constraint\.latency: the cost model gives flops, params only"):
        strategy.ask()
    strategy = RandomSearch(NB201Space(), budget=5, constraint=Constraint({"params": 0.5}, toy_cost))
    strategy.space = NB201Space()
    with pytest.raises(ValueError, match=r"no genotype satisfies constraint\.params=0\.5 in 1000 draws") as err:
        strategy.constraint.require(lambda: NB201Space().parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert "\n" not in str(err.value) and strategy.constraint.rejected == 1000


@pytest.mark.parametrize("names, reference, match", [
    (["accuracy", "flop"], {}, r"objectives=\[accuracy, flop\] is not valid: .*\(flop unknown\)"),
    (["flops"], {}, r"objectives=\[flops\] is not valid: accuracy and any of params, flops, latency, each once"),
    (["accuracy", "flops", "flops"], {}, r"each once"),
    (["accuracy", "flops"], {}, r"set hypervolume_reference\.flops"),
    (["accuracy", "flops"], {"flop": 3}, r"hypervolume_reference\.flop is not an objective")])
def test_bad_objectives_are_one_line_errors(names, reference, match):
    """Unknown, missing or repeated objectives and a missing or unknown reference are refused in one line."""
    with pytest.raises(ValueError, match=match) as err:
        Objectives(names, toy_cost, reference)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a cost model"):
        Objectives(["accuracy", "params"], None, {"params": 1})


@pytest.mark.parametrize("make", [Hyperband, BOHB])
def test_multi_fidelity_strategies_refuse_a_budget(make):
    """Hyperband and BOHB take neither a constraint nor cost objectives: a one-line error names the ones that do."""
    with pytest.raises(ValueError, match=r"takes no constraint.* use strategy=random\|evolution\|bo\|pso"):
        make(NB201Space(), constraint=Constraint({"flops": 5}, toy_cost))
    with pytest.raises(ValueError, match="objectives=\\['accuracy', 'flops'\\]"):
        make(NB201Space(), objectives=Objectives(["accuracy", "flops"], toy_cost, {"flops": 9}))


# ---------------------------------------------------------------- the run


def budget_run(run_dir, csv, strategy, **budget) -> DiscreteRun:
    """A discrete run in the NB201 space scored by the table, with the toy cost and ``budget`` settings."""
    return DiscreteRun(run_dir, NB201Space(), None, strategy, partial(TabularEvaluator, path=str(csv)), cost=toy_cost,
                       **budget)


@pytest.mark.parametrize("make, budget", [
    (partial(RegularizedEvolution, budget=30, seed=3), {"constraint": {"flops": LIMIT, "params": None}}),
    (partial(ParticleSwarm, budget=30, swarm=8, seed=3), {"objectives": ["accuracy", "flops"],
                                                         "hypervolume_reference": {"flops": 60}}),
    (partial(RandomSearch, budget=30, seed=3), {"constraint": {"flops": 30}, "objectives": ["accuracy", "params"],
                                               "hypervolume_reference": {"params": 6}})],
    ids=["constrained-evolution", "pareto-pso", "both-random"])
def test_resume_replays_a_budgeted_run_exactly(nb201_csv, tmp_path, make, budget):
    """A constrained or multi-objective run cut after 13 evaluations (mid-line) and resumed ends with the uninterrupted
    run's history, Pareto log and result (rejections and hypervolume included)."""
    full = budget_run(tmp_path / "full", nb201_csv, make, **budget).run()
    budget_run(tmp_path / "cut", nb201_csv, make, **budget).run()
    lines = (tmp_path / "cut" / HISTORY).read_text().splitlines(keepends=True)
    (tmp_path / "cut" / HISTORY).write_text("".join(lines[:13]) + lines[13][:20])
    (tmp_path / "cut" / "result.json").unlink()
    resumed = budget_run(tmp_path / "cut", nb201_csv, make, **budget)
    resumed.resume()
    assert resumed.run() == {**full, "elapsed": read_json(tmp_path / "cut" / "result.json")["elapsed"]}
    assert history_without_timing(tmp_path / "cut") == history_without_timing(tmp_path / "full")
    if "objectives" in budget:
        assert (tmp_path / "cut" / PARETO).read_text() == (tmp_path / "full" / PARETO).read_text()
    assert ("rejected" in full) == ("constraint" in budget) and full.get("rejected", 1) > 0


def test_run_records_costs_the_front_per_generation_and_the_result(nb201_csv, tmp_path):
    """Each history record and the result hold the genotype's cost; pareto.jsonl has a line per generation whose
    hypervolume never falls; the result's front and hypervolume are the last line's, every front genotype evaluated."""
    make = partial(RegularizedEvolution, budget=24, population=6, generation=3, seed=0)
    result = budget_run(tmp_path, nb201_csv, make, objectives=["accuracy", "flops"], constraint={"flops": 40}).run()
    records = read_jsonl(tmp_path / HISTORY)
    space = NB201Space()
    assert all(r["genotype_cost"] == toy_cost(space.parse(r["genotype"])) for r in records)
    assert result["cost"] == toy_cost(space.parse(result["genotype"]))
    lines = read_jsonl(tmp_path / PARETO)
    assert [line["evaluations"] for line in lines] == [3, 6, 9, 12, 15, 18, 21, 24]
    volumes = [line["hypervolume"] for line in lines]
    assert volumes == sorted(volumes) and volumes[-1] == result["hypervolume"] > 0
    assert result["pareto_front"] == lines[-1]["pareto_front"] and result["hypervolume_reference"]["flops"] == 40
    evaluated = {r["genotype"]: r["score"] for r in records}
    assert all(evaluated[p["genotype"]] == p["accuracy"] for p in result["pareto_front"])
    assert result["objectives"] == ["accuracy", "flops"] and result["rejected"] >= 0


# ---------------------------------------------------------------- train_search.py and the study report


NB201_TABLE = ("search_space=nb201", "evaluator=tabular", "seed=1")


@pytest.fixture(scope="module")
def budget_study(nb201_csv, tmp_path_factory):
    """Tabular NB201 runs through train_search.py: evolution under constraint.flops=30, random search with objectives
    [accuracy, flops]."""
    from conftest import run_entry

    base = tmp_path_factory.mktemp("budget")
    table = f"evaluator.path={nb201_csv}"
    run_entry("train_search.py", base / "constrained", *NB201_TABLE, table, "strategy=evolution", "strategy.budget=20",
              "constraint.flops=30")
    run_entry("train_search.py", base / "pareto", *NB201_TABLE, table, "strategy=random", "strategy.budget=20",
              "objectives=[accuracy,flops]", "hypervolume_reference.flops=220")
    return base


def test_entry_point_runs_under_a_constraint_and_with_cost_objectives(budget_study):
    """constraint.flops=30 gives a feasible genotype with its exact cost and rejections in result.json; objectives
    [accuracy, flops] write pareto.jsonl and the front; every history record holds its genotype's exact cost (NB201's
    cell 0 costs NATS-Bench's 15.64737 M FLOPs, 0.129306 M parameters)."""
    constrained = read_json(budget_study / "constrained" / "result.json")
    assert constrained["cost"]["flops"] <= 30 and constrained["rejected"] > 0
    assert all(r["genotype_cost"]["flops"] <= 30 for r in read_jsonl(budget_study / "constrained" / HISTORY))
    pareto = read_json(budget_study / "pareto" / "result.json")
    assert pareto["objectives"] == ["accuracy", "flops"] and pareto["hypervolume"] > 0
    assert pareto["hypervolume_reference"] == {"accuracy": 0.0, "flops": 220.0}
    assert read_jsonl(budget_study / "pareto" / PARETO)[-1]["pareto_front"] == pareto["pareto_front"]
    from darts.cost.model import CostModel
    cell0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    assert CostModel.measure(NB201Space()).cost(NB201Space().parse(cell0)) == {"params": 0.129306, "flops": 15.64737}


@pytest.mark.parametrize("override, match", [
    ("constraint.flop=3", r"'constraint\.flop': constraint has no such setting; choose one of params, flops, latency"),
    ("objectives=[accuracy,flop]", r"objectives=\[accuracy, flop\] is not valid"),
    ("objectives=[accuracy,flops]", r"set hypervolume_reference\.flops"),
    ("constraint.latency=5", r"constraint\.latency: the cost model gives flops, params only"),
    ("strategy=hyperband", r"Hyperband takes no constraint")])
def test_bad_budget_settings_are_one_line_errors_from_the_command_line(nb201_csv, tmp_path, override, match):
    """Unknown metrics and objectives, a missing reference point, latency without a latency table and a strategy
    without constraint support end the command with one line naming the setting."""
    from conftest import run_entry

    extra = ("constraint.flops=30",) if override.startswith("strategy=") else ("strategy=random",)
    proc = run_entry("train_search.py", tmp_path, *NB201_TABLE, f"evaluator.path={nb201_csv}", override, *extra,
                     "strategy.budget=5", check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1 and __import__("re").search(match, errors[0]), proc.stderr[-2000:]


def test_study_report_plots_accuracy_against_cost_with_each_methods_front(budget_study, tmp_path):
    """The report of runs with exact costs draws accuracy against FLOPs with each method's front, and the fronts the
    multi-objective search kept."""
    from darts.reporting.report import write_report

    report = write_report([budget_study], tmp_path).read_text()
    assert (tmp_path / "accuracy_cost.png").is_file() and (tmp_path / "pareto_fronts.png").is_file()
    assert "## Accuracy against cost" in report and "## Fronts kept by multi-objective searches" in report
    assert "| `flops` |" in report
    older = tmp_path / "older"  # a discrete run from before result.json's cost was the genotype's: seconds
    __import__("shutil").copytree(budget_study / "constrained", older / "run")
    result = read_json(older / "run" / "result.json")
    (older / "run" / "result.json").write_text(json.dumps({**result, "cost": 12.5}))
    assert "Accuracy against cost" not in write_report([older], tmp_path / "older_report").read_text()


def test_the_budget_benchmark_runs_and_reports_feasible_genotypes(nb201_csv, tmp_path, capsys):
    """benchmarks/budget.py with 2 seeds (BO left out) writes every run, both figures and the tables; every genotype
    it reports under a constraint is feasible, and every hypervolume fraction is in (0, 1]."""
    from benchmarks import budget

    budget.main(["--table", str(nb201_csv), "--seeds", "2", "--bo-seeds", "0", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "budget.json").read_text())
    constrained = [r for r in data["runs"] if r["part"] == "constrained"]
    pareto = [r for r in data["runs"] if r["part"] == "pareto"]
    assert len(constrained) == 2 * 2 * 2 and len(pareto) == 3 * 2
    assert all(r["feasible"] and r["all_feasible"] and r["flops"] <= r["limit"] for r in constrained)
    assert all(0 < r["fraction_valid"] <= 1 and 0 < r["fraction_test"] <= 1 for r in pareto)
    assert data["brute_force"]["feasible"] == {"25": 3942, "50": 7984}
    assert (tmp_path / "budget_gaps.png").is_file() and (tmp_path / "budget_fronts.png").is_file()
    assert "| flops <= 19.58 (P25, 3942 cells) | random search | 2 |" in capsys.readouterr().out


def test_a_latency_table_gives_latency_constraints_and_objectives(nb201_csv, tmp_path, counted_time):
    """With a darts-latency table of the space, a run constrains and optimises latency (ms): every evaluated cell is
    within the limit, and the history and result hold each genotype's latency beside its params and FLOPs."""
    from darts.cost.latency import LatencyTable
    from darts.cost.timing import Timer

    space = NB201Space(init_channels=2, cells_per_stage=1)
    path = LatencyTable.measure(space, timer=Timer.of(repeats=2, warmup=0)).save(tmp_path / "latency.json")
    run = DiscreteRun(tmp_path / "run", space, None, partial(RandomSearch, budget=12, seed=0),
                      partial(TabularEvaluator, path=str(nb201_csv)), latency_table=str(path))
    latencies = sorted(run.measure(space.sample(torch.Generator().manual_seed(s)))["latency"] for s in range(40))
    limit = latencies[20]
    run = DiscreteRun(tmp_path / "limited", space, None, partial(RandomSearch, budget=12, seed=0),
                      partial(TabularEvaluator, path=str(nb201_csv)), latency_table=str(path),
                      constraint={"latency": limit}, objectives=["accuracy", "latency"])
    result = run.run()
    records = read_jsonl(tmp_path / "limited" / HISTORY)
    assert all(r["genotype_cost"]["latency"] <= limit for r in records) and result["rejected"] > 0
    assert set(result["cost"]) == {"params", "flops", "latency"} and result["hypervolume_reference"]["latency"] == limit
    with pytest.raises(ValueError, match="ToySpace has no cost model"):
        from search_spaces.toy import ToySpace
        DiscreteRun(tmp_path / "toy", ToySpace(), None, partial(RandomSearch, budget=2), partial(TabularEvaluator,
                    path=str(nb201_csv)), latency_table=str(path))
