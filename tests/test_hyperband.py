"""Multi-fidelity search: Hyperband's bracket schedule and promotions, BOHB's kernel density model, fidelities through
the run (history, replay, result), the tabular per-epoch columns, and an end-to-end run training on real images."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import read_json, run_entry
from darts.evaluators import Evaluation, Evaluator, TabularEvaluator
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY, DiscreteRun
from darts.strategies.discrete.bohb import BOHB
from darts.strategies.discrete.hyperband import Hyperband, brackets
from darts.strategies.discrete.kde import CategoricalKDE, decode, encode, propose
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.toy import ToySpace

EPOCHS = (1, 4, 12)  # the synthetic per-epoch table's fidelities


def drive(strategy, score) -> list[tuple[list, object]]:
    """Run ask/tell to the end with ``score(genotype, fidelity)``; the generations and their fidelities."""
    generations = []
    while not strategy.done:
        asked = strategy.ask()
        generations.append((asked, strategy.fidelity))
        strategy.tell([score(g, strategy.fidelity) for g in asked], [float(strategy.fidelity)] * len(asked))
    return generations


def nb201_score(genotype, fidelity) -> float:
    """A deterministic fake accuracy: the number of 3x3 convolutions, plus a small fidelity bonus."""
    return sum(op == "nor_conv_3x3" for op in genotype.ops) + 0.01 * fidelity


def test_bracket_schedule_is_li_et_al_table_1():
    """R=81, eta=3 gives Li et al.'s Table 1: (n_i, r_i) per rung of brackets s=4..0."""
    table = [[(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)], [(34, 3), (11, 9), (3, 27), (1, 81)],
             [(15, 9), (5, 27), (1, 81)], [(8, 27), (2, 81)], [(5, 81)]]
    assert brackets(81, 3) == [[(n, float(r)) for n, r in bracket] for bracket in table]


def test_rungs_promote_the_top_third_and_stay_in_the_space():
    """Each rung after the first holds exactly the top floor(n_i / eta) genotypes of the rung before, by score, at the
    next fidelity; every proposal is a valid genotype of the space."""
    space = NB201Space()
    strategy = Hyperband(space, budget=81 + 27 + 9 + 3 + 1, max_fidelity=81, seed=0)
    generations = drive(strategy, nb201_score)
    assert [(len(g), f) for g, f in generations] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    for (before, _), (after, _) in zip(generations, generations[1:]):
        ranked = sorted(before, key=lambda g: -nb201_score(g, 0))
        assert after == ranked[:len(before) // 3]
    assert all(space.parse(space.to_text(g)) == g for g in generations[0][0])


def test_evaluation_budget_is_exact_and_ends_at_the_top_fidelity():
    """Budgets of 1 to 40 evaluations are spent exactly, a bracket that does not fit is skipped, and the best is
    always a top-fidelity score even when lower fidelities score higher."""
    for budget in range(1, 41):
        strategy = Hyperband(NB201Space(), budget=budget, max_fidelity=12, seed=budget)
        drive(strategy, lambda g, f: 100.0 - f)  # low fidelities score higher: they must never win
        assert len(strategy.history) == budget and strategy.fidelities[-1] == 12
        assert strategy.best()[1] == 88.0


def test_time_budget_stops_mid_rung():
    """With a 1 s cost per epoch and a 30 s time budget, the search stops at the first evaluation that spends it."""
    strategy = Hyperband(NB201Space(), budget=1000, max_fidelity=12, seed=0, time_budget=30.0)
    generations = drive(strategy, nb201_score)
    assert all(len(g) == 1 for g, _ in generations)
    assert strategy.spent >= 30.0 and strategy.spent - strategy.fidelities[-1] < 30.0


def test_low_fidelity_never_wins_the_run(tmp_path):
    """In a run whose low fidelities score higher, result.json is the best top-fidelity candidate, at that fidelity."""
    class Fake(Evaluator):
        def evaluate(self, genotype, index, fidelity=None):
            return Evaluation(100.0 - fidelity + nb201_score(genotype, 0), float(fidelity))

    result = DiscreteRun(tmp_path, NB201Space(), None, partial(Hyperband, budget=13, max_fidelity=12, seed=1),
                         lambda space, data, context: Fake(space)).run()
    records = read_jsonl(tmp_path / HISTORY)
    top = [r for r in records if r["fidelity"] == 12]
    assert [r["fidelity"] for r in records] == [1] * 9 + [4] * 3 + [12]
    assert result["fidelity"] == 12 and result["score"] == max(r["score"] for r in top) < records[0]["score"]


@pytest.fixture(scope="module")
def epochs_csv(nb201_csv, tmp_path_factory) -> Path:
    """The real NB201 rows with validation columns after 1 and 4 epochs derived from the 12-epoch one (60% and 85%
    of it), each with a recorded time of 10 s per epoch."""
    lines = nb201_csv.read_text().splitlines()
    header = lines[0].split(",")
    k = header.index("cifar10_valid_12ep")
    extra = [name for e in EPOCHS[:2] for name in (f"cifar10_valid_{e}ep", f"cifar10_valid_{e}ep_time")]
    rows = [lines[0] + "," + ",".join(extra + ["cifar10_valid_12ep_time"])]
    for line in lines[1:]:
        valid = float(line.split(",")[k])
        rows.append(line + f",{0.60 * valid:.4f},10,{0.85 * valid:.4f},40,120")
    path = tmp_path_factory.mktemp("epochs") / "epochs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_tabular_fidelity_reads_per_epoch_columns(epochs_csv, nb201_csv):
    """An epochs fidelity reads fidelity_column's column and its time; the shipped table (12-epoch columns only) is
    refused in one line naming the missing column and the NATS-Bench export; a test pattern is refused."""
    space = NB201Space()
    genotype = space.sample(torch.Generator().manual_seed(3))
    ev = TabularEvaluator(space, path=str(epochs_csv))
    one, four = ev.evaluate(genotype, 0, 1), ev.evaluate(genotype, 0, 4)
    assert (one.score, one.cost) == (ev.benchmark.query(genotype, "cifar10_valid_1ep"), 10.0)
    assert (four.score, four.cost) == (ev.benchmark.query(genotype, "cifar10_valid_4ep"), 40.0)
    assert ev.evaluate(genotype, 0, 12).score == ev.evaluate(genotype, 0).score
    export = r"'cifar10_valid_1ep'.*get_more_info\(index, 'cifar10-valid', iepoch=e-1"
    with pytest.raises(ValueError, match=export) as err:
        TabularEvaluator(space, path=str(nb201_csv)).evaluate(genotype, 0, 1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="fidelity_column"):
        TabularEvaluator(space, path=str(epochs_csv), fidelity_column="cifar10_test_{epochs}ep")


@pytest.mark.parametrize("make", [Hyperband, BOHB], ids=["hyperband", "bohb"])
def test_resume_replays_the_history_with_its_fidelities(epochs_csv, tmp_path, make):
    """A tabular run cut after 20 evaluations and resumed ends with the uninterrupted history (fidelities included);
    a history whose fidelities were changed is refused."""
    def run(name: str) -> DiscreteRun:
        return DiscreteRun(tmp_path / name, NB201Space(), None, partial(make, budget=60, max_fidelity=12, seed=4),
                           partial(TabularEvaluator, path=str(epochs_csv), fidelity_column="cifar10_valid_{epochs}ep"))

    def history(name: str) -> list[dict]:
        records = read_jsonl(tmp_path / name / HISTORY)
        return [{k: v for k, v in r.items() if k not in ("time", "elapsed")} for r in records]

    full = run("full").run()
    run("cut").run()
    lines = (tmp_path / "cut" / HISTORY).read_text().splitlines(keepends=True)
    (tmp_path / "cut" / HISTORY).write_text("".join(lines[:20]))
    resumed = run("cut")
    resumed.resume()
    assert resumed.run()["genotype"] == full["genotype"] and history("cut") == history("full")
    assert {r["fidelity"] for r in history("full")} == {1, 4, 12}
    edited = [json.loads(line) for line in lines[:20]]
    edited[0]["fidelity"] = 12
    (tmp_path / "cut" / HISTORY).write_text("".join(json.dumps(r) + "\n" for r in edited))
    (tmp_path / "cut" / "result.json").unlink()
    bad = run("cut")
    bad.resume()
    with pytest.raises(ValueError, match="at fidelity 12 there but .* at fidelity 1 on replay"):
        bad.run()


def test_kde_proposes_near_good_genotypes():
    """With good data all on one NB201 cell and bad data elsewhere, most of 20 proposals are that cell or one edge
    from it, where uniform samples almost never are."""
    space, generator = NB201Space(), torch.Generator().manual_seed(0)
    target = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                         "nor_conv_3x3~2|")
    good = encode(space, target).repeat(8, 1)  # [8, 6]
    bad = torch.stack([encode(space, space.sample(generator)) for _ in range(30)])  # [30, 6]
    l, g = CategoricalKDE(good, 5, 0.1), CategoricalKDE(bad, 5, 0.1)
    near = [(encode(space, propose(space, l, g, 64, generator)) != encode(space, target)).sum() <= 1 for _ in range(20)]
    assert sum(near) >= 18


def test_encoding_round_trips_and_projects_darts():
    """encode/decode is the identity on NB201 and the toy space and on DARTS cells; in DARTS any vector decodes to a
    valid genotype."""
    generator = torch.Generator().manual_seed(1)
    for space in (NB201Space(), ToySpace()):
        genotype = space.sample(generator)
        assert decode(space, encode(space, genotype)) == genotype
    darts = DartsSpace()
    genotype = darts.sample(generator)  # decoding may list a node's two inputs in the other order: the same cell
    assert torch.equal(encode(darts, decode(darts, encode(darts, genotype))), encode(darts, genotype))
    vector = torch.randint(len(darts.primitives), (28,), generator=generator)
    assert darts.parse(darts.to_text(decode(darts, vector)))


def test_bohb_model_proposes_better_than_uniform():
    """Given 30 scored genotypes at the top fidelity (score: 3x3 convolutions counted), BOHB's model proposals
    (random_fraction 0) hold on average at least half a 3x3 convolution more than uniform samples (1.2 expected)."""
    space, generator = NB201Space(), torch.Generator().manual_seed(1)
    strategy = BOHB(space, budget=100, max_fidelity=9, random_fraction=0.0, seed=0)
    for genotype in (space.sample(generator) for _ in range(30)):
        strategy.history.append((genotype, nb201_score(genotype, 0)))
        strategy.fidelities.append(9)
    proposed = [nb201_score(g, 0) for g in strategy._new_configs(30)]
    uniform = [nb201_score(space.sample(generator), 0) for _ in range(300)]
    assert strategy.model_fidelity == 9 and sum(proposed) / 30 > sum(uniform) / 300 + 0.5


@pytest.mark.parametrize("kwargs, match", [({"eta": 1}, "eta=1"),
                                           ({"min_fidelity": 5, "max_fidelity": 3}, "min_fidelity=5"),
                                           ({"top_n_percent": 0}, "top_n_percent=0"),
                                           ({"min_points_in_model": 3}, "min_points_in_model=3"),
                                           ({"random_fraction": 2}, "random_fraction=2")])
def test_bad_settings_are_refused(kwargs, match):
    """Out-of-range settings raise one ValueError naming the value."""
    with pytest.raises(ValueError, match=match):
        BOHB(NB201Space(), **kwargs)


def test_end_to_end_training_on_real_images(cifar_mini, nb201_csv, tmp_path):
    """train_search.py +experiment=bohb (evaluator=train on cifar10-mini, tiny NB201 net, fidelities of 1 and 3
    epochs) writes a history of bracket s=1 (3 genotypes at 1 epoch, the best at 3) and a result at 3 epochs with the
    table's accuracies."""
    run_entry("train_search.py", tmp_path / "run", "+experiment=bohb", f"dataset.root={cifar_mini}",
              f"benchmark.path={nb201_csv}", "strategy.budget=4", "steps_per_epoch=1", "evaluator.eval_batches=1",
              "evaluator.batch_size=8", "device=cpu")
    records = read_jsonl(tmp_path / "run" / HISTORY)
    result = read_json(tmp_path / "run" / "result.json")
    assert [r["fidelity"] for r in records] == [1, 1, 1, 3] and all(r["cost"] > 0 for r in records)
    ranked = sorted(records[:3], key=lambda r: -r["score"])
    assert records[3]["genotype"] == ranked[0]["genotype"]
    assert (result["fidelity"], result["score"], result["best_index"]) == (3, records[3]["score"], 3)
    assert "cifar10_test_200ep" in result["benchmark"]
