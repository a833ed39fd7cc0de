"""Particle swarm optimisation (darts/strategies/discrete/pso.py): proposals stay in the space, the velocity rule, personal
and global bests, budgets, the checkpointed swarm, exact resume and an end-to-end run on the NB201 table."""
from __future__ import annotations

import math
import zlib
from functools import partial

import pytest
import torch
from conftest import ask_until_done, history_without_timing, read_json, run_entry, tabular_run

from darts.runs import checkpoint
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY
from darts.strategies.discrete.pso import ParticleSwarm, velocity
from darts.data.tabular import Table
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.toy import ToySpace

SPACES = {"nb201": NB201Space, "darts": DartsSpace, "toy": ToySpace}


def fake_score(space, genotype) -> float:
    """A deterministic score of a genotype: a checksum of its text in [0, 1)."""
    return (zlib.crc32(space.to_text(genotype).encode()) % 10007) / 10007


@pytest.mark.parametrize("name", sorted(SPACES))
def test_proposals_stay_in_the_space(name):
    """Every proposal over 6 generations is a genotype of the space (its text parses back to it, its one-hot mixing
    builds) and generations after the first are the space's derivation of the particles' positions."""
    space = SPACES[name]()
    pso = ParticleSwarm(space, budget=60, swarm=10, seed=3)
    generations = []
    for t in range(6):
        genotypes = pso.ask()
        generations.append(genotypes)
        assert len(genotypes) == 10
        for i, genotype in enumerate(genotypes):
            assert space.parse(space.to_text(genotype)) == genotype and space.one_hot(genotype)
            assert type(genotype) is type(space.sample(torch.Generator()))
            assert t == 0 or genotype == space.derive({c: x[i] for c, x in pso.positions.items()})
        pso.tell([fake_score(space, g) for g in genotypes])
    assert pso.done and any(g != generations[0] for g in generations[1:])  # the swarm moved


def test_velocity_rule_equals_the_formula_on_fixed_inputs():
    """w v + c1 r1 (p - x) + c2 r2 (g - x), computed by hand, then clamped to [-vmax, vmax]."""
    v, x, p = torch.tensor([[[0.5, -0.2]]]), torch.tensor([[[0.2, 1.0]]]), torch.tensor([[[1.0, 0.0]]])
    g, r1, r2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[[0.5, 0.25]]]), torch.tensor([[[0.25, 1.0]]])
    # dim 0: 0.7*0.5 + 1.5*0.5*0.8 + 2*0.25*(-0.2) = 0.35 + 0.6 - 0.1; dim 1: 0.7*-0.2 + 1.5*0.25*-1 + 0 = -0.515
    expected = torch.tensor([[[0.85, -0.515]]])
    assert torch.allclose(velocity(v, x, p, g, r1, r2, 0.7, 1.5, 2.0, None), expected)
    assert torch.allclose(velocity(v, x, p, g, r1, r2, 0.7, 1.5, 2.0, 0.5), torch.tensor([[[0.5, -0.5]]]))


def test_a_generation_moves_every_particle_by_the_rule():
    """After a told generation, the next ask draws r1, r2 from the generator, sets v <- velocity(...) and
    x <- x + v for every particle, and proposes derive(x); the initial velocities lie in [-x, 1 - x]."""
    space = NB201Space()
    pso = ParticleSwarm(space, budget=40, swarm=8, seed=1)
    first = pso.ask()
    x, v = pso.positions["cell"].clone(), pso.velocities["cell"].clone()  # [S, E, K]
    assert torch.equal(x, torch.stack([pso._encode(g)["cell"] for g in first]))
    assert bool(((v >= -x) & (v <= 1 - x)).all())
    pso.tell([fake_score(space, g) for g in first])
    p, g = pso.best_positions["cell"].clone(), pso.global_best["cell"].clone()
    draws = torch.Generator().manual_seed(0)
    draws.set_state(pso.generator.get_state())
    r1, r2 = torch.rand(x.shape, generator=draws), torch.rand(x.shape, generator=draws)
    second = pso.ask()
    new_v = velocity(v, x, p, g, r1, r2, 0.7298, 1.49618, 1.49618, 1.0)
    assert torch.equal(pso.velocities["cell"], new_v) and torch.equal(pso.positions["cell"], x + new_v)
    assert second == [space.derive({"cell": xi}) for xi in x + new_v]


def test_personal_and_global_bests_are_tracked():
    """After every generation the global best is the best score told so far, at the position of the first
    particle that reached it, and each particle's best is the maximum over its own evaluations."""
    space = NB201Space()
    pso = ParticleSwarm(space, budget=50, swarm=10, seed=4)
    scores = []
    while not pso.done:
        genotypes = pso.ask()
        told = [fake_score(space, g) for g in genotypes]
        positions = pso.positions["cell"].clone()
        pso.tell(told)
        scores.append(told)
        best = max(max(s) for s in scores)
        assert pso.global_score == best == pso.best()[1]
        if best in told and best not in [s for gen in scores[:-1] for s in gen]:
            assert torch.equal(pso.global_best["cell"], positions[told.index(best)])
    per_particle = torch.tensor(scores, dtype=torch.float64).max(dim=0).values  # [S]
    assert torch.equal(pso.best_scores, per_particle)


def test_budgets_in_evaluations_and_time_are_honoured():
    """25 evaluations with a swarm of 10 end after 3 generations, the last one cut to 5; with 2 s per evaluation and a
    time budget of 7 s, a swarm of 3 stops after its second generation (12 s spent, the crossing generation kept)."""
    space = ToySpace()
    pso = ParticleSwarm(space, budget=25, swarm=10, seed=0)
    assert [len(g) for g in ask_until_done(pso, partial(fake_score, space))] == [10, 10, 5] and len(pso.history) == 25
    timed = ParticleSwarm(space, budget=50, swarm=3, seed=0, time_budget=7.0)
    while not timed.done:
        genotypes = timed.ask()
        timed.tell([fake_score(space, g) for g in genotypes], [2.0] * len(genotypes))
    assert len(timed.history) == 6 and timed.spent == 12.0


def test_the_initial_swarm_draws_a_warm_start_first():
    """The first generation begins with the warm start's genotypes, in order, then uniform samples."""
    space = NB201Space()
    warm = [space.sample(torch.Generator().manual_seed(s)) for s in (10, 11)]
    pso = ParticleSwarm(space, budget=20, swarm=5, seed=0)
    pso.warm = list(warm)
    assert pso.ask()[:2] == warm


@pytest.mark.parametrize("kwargs, match", [({"swarm": 0}, "swarm=0"), ({"w": -0.1}, "w=-0.1"),
                                           ({"c2": -1.0}, "c2=-1.0"), ({"vmax": 0.0}, "vmax=0.0")])
def test_bad_settings_are_rejected(kwargs, match):
    """A swarm below 1, a negative coefficient or a non-positive clamp raise ValueError naming the value."""
    with pytest.raises(ValueError, match=match):
        ParticleSwarm(ToySpace(), **kwargs)


def test_default_swarm_size_is_spso_2007s():
    """swarm=None gives 10 + floor(2 sqrt(D)): 20 in NB201 (D = 30), 39 in DARTS (D = 224), 14 in toy (D = 6)."""
    assert [ParticleSwarm(SPACES[n]()).swarm_size for n in ("nb201", "darts", "toy")] == [20, 39, 14]


def test_state_round_trips_and_the_run_checkpoints_the_swarm(nb201_csv, tmp_path):
    """The run's checkpoint holds the swarm after the last generation (positions, velocities, bests, history,
    generator), and a fresh strategy loading a state_dict has the same history and proposes the same next generation
    as the one that saved it."""
    make = partial(ParticleSwarm, budget=30, swarm=10, seed=7)
    run = tabular_run(tmp_path, nb201_csv, make)
    run.run()
    saved, live = checkpoint.load(tmp_path / "checkpoint.pt")["strategy"], run.strategy.state_dict()
    assert set(saved) == {"positions", "velocities", "best_positions", "best_scores", "global_best", "global_score",
                          "history", "fidelities", "spent", "warm", "generator", "rejected"}
    assert saved["history"] == [[r["genotype"], r["score"]] for r in read_jsonl(tmp_path / HISTORY)]
    for key in ("positions", "velocities", "best_positions", "global_best"):
        assert saved[key]["cell"].shape[-2:] == (6, 5) and torch.equal(saved[key]["cell"], live[key]["cell"])
    assert torch.equal(saved["best_scores"], live["best_scores"]) and saved["global_score"] == run.best[0]
    space, table = NB201Space(), Table(nb201_csv, NB201Space())
    original, restored = make(space=space, budget=60), make(space=space, budget=60)
    for _ in range(2):
        original.tell([table.query(g, "cifar10_valid_12ep") for g in original.ask()])
    restored.load_state_dict(original.state_dict())
    assert (restored.remaining, restored.best()) == (original.remaining, original.best())
    assert restored.ask() == original.ask()


def test_a_resumed_run_equals_an_uninterrupted_one(nb201_csv, tmp_path):
    """A run cut after 23 evaluations (mid-generation, mid-line) and resumed ends with the uninterrupted run's history,
    result and checkpointed swarm."""
    make = partial(ParticleSwarm, budget=40, swarm=10, seed=2)
    full = tabular_run(tmp_path / "full", nb201_csv, make).run()
    tabular_run(tmp_path / "cut", nb201_csv, make).run()
    lines = (tmp_path / "cut" / HISTORY).read_text().splitlines(keepends=True)
    (tmp_path / "cut" / HISTORY).write_text("".join(lines[:23]) + lines[23][:25])
    (tmp_path / "cut" / "result.json").unlink()
    resumed = tabular_run(tmp_path / "cut", nb201_csv, make)
    resumed.resume()
    assert len(resumed.records) == 23
    assert resumed.run() == {**full, "elapsed": read_json(tmp_path / "cut" / "result.json")["elapsed"]}
    assert history_without_timing(tmp_path / "cut") == history_without_timing(tmp_path / "full")
    a, b = (checkpoint.load(tmp_path / name / "checkpoint.pt")["strategy"] for name in ("full", "cut"))
    assert torch.equal(a["positions"]["cell"], b["positions"]["cell"]) and a["global_score"] == b["global_score"]


def test_end_to_end_on_the_table(nb201_csv, tmp_path):
    """`train_search.py +experiment=nb201_pso` runs 30 evaluations on the table: a history of 30 valid cells, the best
    one's benchmark accuracies in result.json, and the swarm of 20 in the checkpoint."""
    run_entry("train_search.py", tmp_path, "+experiment=nb201_pso", f"evaluator.path={nb201_csv}",
              "strategy.budget=30", "seed=1")
    result, records = read_json(tmp_path / "result.json"), read_jsonl(tmp_path / HISTORY)
    assert len(records) == 30 and result["evaluations"] == 30
    assert result["score"] == max(r["score"] for r in records) and 0 < result["benchmark"]["cifar10_test_200ep"] < 100
    assert all(NB201Space().parse(r["genotype"]) for r in records)
    swarm = checkpoint.load(tmp_path / "checkpoint.pt")["strategy"]
    assert swarm["positions"]["cell"].shape == (20, 6, 5) and not math.isinf(swarm["global_score"])
