"""BANANAS (darts/strategies/discrete/bananas.py, predictor.py) and the spaces' encodings: proposals stay in the space, the
batched predictor learns, ITS takes the predicted best, budgets, the checkpointed state, exact resume and an
end-to-end run on the NB201 table."""
from __future__ import annotations

import zlib
from functools import partial

import pytest
import torch

from conftest import ask_until_done, history_without_timing, read_json, run_entry, tabular_run
from darts.runs import checkpoint
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY
from darts.strategies.discrete.bananas import Bananas
from darts.strategies.discrete.predictor import MLPEnsemble
from darts.data.tabular import Table
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.toy import ToySpace

SPACES = {"nb201": NB201Space, "darts": partial(DartsSpace, layers=3, init_channels=4), "toy": ToySpace}
FAST = {"epochs": 10, "members": 3}  # a small predictor where the test is not about its fit


def fake_score(space, genotype) -> float:
    """A deterministic score of a genotype: a checksum of its text in [0, 1)."""
    return (zlib.crc32(space.to_text(genotype).encode()) % 10007) / 10007


def ranks(x: torch.Tensor) -> torch.Tensor:
    """The ranks 0..n-1 of the values of x [n]."""
    return x.argsort().argsort().float()


@pytest.mark.parametrize("name", ["darts", "toy"])
def test_default_encoding_is_the_one_hot_op_of_every_edge(name):
    """The base encoding has one 1 per edge of each cell type, at the op ``one_hot`` gives it."""
    space, generator = SPACES[name](), torch.Generator().manual_seed(0)
    for _ in range(20):
        genotype = space.sample(generator)
        code = space.encode(genotype).view(len(space.cell_types), space.num_edges, len(space.primitives))
        index = torch.tensor([list(space.one_hot(genotype)[c].index) for c in space.cell_types])
        assert code.dtype == torch.float32 and bool((code.sum(-1) == 1).all())
        assert torch.equal(code.argmax(-1), index)


def test_nb201_path_encoding_marks_the_op_sequence_of_each_input_output_path():
    """NB201's path encoding sets one bit per input-to-output path's op sequence (155 bits), and tells apart every
    one of 2,000 distinct sampled cells."""
    space = NB201Space()
    cell = space.parse("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    k, op = len(space.primitives), space.primitives.index
    expected = {op("none"),  # 0->3
                k + op("nor_conv_3x3") + k * op("nor_conv_1x1"),  # 0->1->3
                k + op("skip_connect") + k * op("nor_conv_3x3"),  # 0->2->3
                k + k * k + op("nor_conv_3x3") + k * op("avg_pool_3x3") + k * k * op("nor_conv_3x3")}  # 0->1->2->3
    code = space.encode(cell)
    assert code.shape == (155,) and set(code.nonzero().flatten().tolist()) == expected
    generator, codes = torch.Generator().manual_seed(1), {}
    for _ in range(2000):
        genotype = space.sample(generator)
        codes.setdefault(tuple(space.encode(genotype).tolist()), set()).add(space.to_text(genotype))
    assert all(len(texts) == 1 for texts in codes.values())


@pytest.mark.parametrize("name", sorted(SPACES))
def test_proposals_stay_in_the_space_and_are_new(name):
    """Every proposal is a genotype of the space (its text parses back to it, it encodes), the initial generation
    has ``initial`` genotypes and the others ``k``, and none repeats an evaluated genotype while the space has new
    ones (the 8-cell toy space runs out: then fewer candidates, then repeats, but the budget is still spent)."""
    space = SPACES[name]()
    strategy = Bananas(space, budget=30, initial=6, k=4, seed=3, **FAST)
    generations = ask_until_done(strategy, partial(fake_score, space))
    sizes = [len(g) for g in generations]
    assert sum(sizes) == 30 and sizes[0] == 6 and (sizes == [6] + [4] * 6 or name == "toy")
    texts = [space.to_text(g) for generation in generations for g in generation]
    for genotype, text in zip([g for generation in generations for g in generation], texts):
        assert space.to_text(space.parse(text)) == text and space.encode(genotype).dim() == 1
    assert len(set(texts)) == (8 if name == "toy" else 30)


def test_predictor_gradient_is_autograds():
    """The batched MLP's hand-written gradient of the summed per-member mean absolute error equals autograd's."""
    generator = torch.Generator().manual_seed(0)
    ensemble = MLPEnsemble(12, 3, 4, 7, generator)
    x, y = torch.randn(3, 9, 12, generator=generator), torch.randn(3, 9, generator=generator)
    ensemble._gradient(x, y)
    weights = [w.clone().requires_grad_() for w in ensemble.weights]
    biases = [b.clone().requires_grad_() for b in ensemble.biases]
    h = x
    for l, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)
        h = h.relu() if l < len(weights) - 1 else h
    (h.squeeze(-1) - y).abs().mean(1).sum().backward()
    for mine, reference in zip(ensemble.grad_weights + ensemble.grad_biases, weights + biases):
        torch.testing.assert_close(mine, reference.grad)


def test_predictor_fits_a_known_function_better_than_chance():
    """Trained on 100 NB201 cells scored by a hidden function of their ops, the ensemble's mean prediction ranks 300
    unseen cells with Spearman correlation > 0.5 (chance: 0), and its members disagree (nonzero spread)."""
    space, generator = NB201Space(), torch.Generator().manual_seed(0)
    value = torch.randn(len(space.primitives), generator=generator)  # a hidden worth of each op

    def score(genotype) -> float:
        return float(sum(value[space.primitives.index(op)] for op in genotype.ops))
    cells = [space.sample(generator) for _ in range(400)]
    x = torch.stack([space.encode(c) for c in cells])  # [400, 155]
    y = torch.tensor([score(c) for c in cells])  # [400]
    ensemble = MLPEnsemble(x.shape[1], 5, 10, 20, torch.Generator().manual_seed(1))
    ensemble.fit(x[:100], (y[:100] - y[:100].mean()) / y[:100].std(), 150, 32, 0.01, torch.Generator().manual_seed(2))
    predictions = ensemble.predict(x[100:])  # [5, 300]
    spearman = torch.corrcoef(torch.stack([ranks(predictions.mean(0)), ranks(y[100:])]))[0, 1]
    assert spearman > 0.5, spearman
    assert float(predictions.std(0).mean()) > 0


class _Known:
    """A stand-in predictor whose members all predict a fixed function of the encoding (no spread)."""

    def __init__(self, members: int):
        self.members = members

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """[E, N]: every member predicts the weighted sum of x's bits."""
        weights = torch.arange(x.shape[1], dtype=torch.float32).sin()
        return (x @ weights).expand(self.members, -1)


def test_its_proposes_the_k_candidates_of_highest_prediction(monkeypatch):
    """With members that agree (ITS's normal has zero spread), the proposals are the k candidates of highest
    prediction, best first."""
    space = NB201Space()
    strategy = Bananas(space, budget=40, initial=10, k=5, seed=0, **FAST)
    first = strategy.ask()
    strategy.tell([fake_score(space, g) for g in first])
    monkeypatch.setattr(strategy, "_fit", lambda: _Known(5))
    state = strategy.generator.get_state()
    candidates = strategy._candidates()
    strategy.generator.set_state(state)  # _acquire draws the same candidates again
    proposals = strategy.ask()
    predicted = _Known(1).predict(torch.stack([space.encode(c) for c in candidates]))[0]
    top = predicted.argsort(descending=True, stable=True)[:5]
    assert [space.to_text(g) for g in proposals] == [space.to_text(candidates[i]) for i in top.tolist()]


def test_its_explores_where_the_members_disagree():
    """ITS draws from N(mean, std) per candidate: with spread, the proposals are not always the top means."""
    space = NB201Space()
    differ = 0
    for seed in range(3):
        strategy = Bananas(space, budget=20, initial=10, k=5, seed=seed, **FAST)
        strategy.tell([fake_score(space, g) for g in strategy.ask()])
        state = strategy.generator.get_state()
        proposals = strategy.ask()
        strategy.generator.set_state(state)
        candidates = strategy._candidates()
        means = strategy.predictor.predict(torch.stack([space.encode(c) for c in candidates])).mean(0)
        top = {space.to_text(candidates[i]) for i in means.argsort(descending=True)[:5].tolist()}
        differ += top != {space.to_text(g) for g in proposals}
    assert differ > 0


def test_budget_in_evaluations_and_in_time():
    """A budget of 25 evaluations gives generations of 10, 10 and 5; a 15 s time budget at 1 s per evaluation stops
    after the generation that crosses it (20 evaluations)."""
    space = NB201Space()
    by_count = ask_until_done(Bananas(space, budget=25, seed=0, **FAST), partial(fake_score, space))
    assert [len(g) for g in by_count] == [10, 10, 5]
    timed = Bananas(space, budget=100, time_budget=15.0, seed=0, **FAST)
    ask_until_done(timed, partial(fake_score, space), cost=1.0)
    assert len(timed.history) == 20 and timed.spent == 20.0


def test_same_seed_same_search_and_scores_steer_it():
    """Two strategies of one seed told the same scores propose the same genotypes; other scores change the
    proposals after the initial design (ask depends only on the seed and the told scores)."""
    space = NB201Space()
    runs = [ask_until_done(Bananas(space, budget=30, seed=4, **FAST), partial(fake_score, space)) for _ in range(2)]
    other = ask_until_done(Bananas(space, budget=30, seed=4, **FAST), lambda g: -fake_score(space, g))
    texts = [[[space.to_text(g) for g in generation] for generation in run] for run in (*runs, other)]
    assert texts[0] == texts[1] and texts[0][0] == texts[2][0] and texts[0][1:] != texts[2][1:]


def test_loaded_state_continues_exactly():
    """A new strategy loaded with another's ``state_dict`` (told data, generator, predictor weights) proposes the
    same next generation and holds the same predictor."""
    space = NB201Space()
    strategy = Bananas(space, budget=40, seed=5, **FAST)
    for _ in range(2):
        strategy.tell([fake_score(space, g) for g in strategy.ask()])
    state = strategy.state_dict()
    restored = Bananas(space, budget=40, seed=99, **FAST)
    restored.load_state_dict(state)
    assert torch.equal(restored.predictor.params, strategy.predictor.params)
    assert [space.to_text(g) for g in restored.ask()] == [space.to_text(g) for g in strategy.ask()]
    assert restored.best() == strategy.best()


def test_run_checkpoints_the_bo_state_and_resumes_exactly(nb201_csv, tmp_path):
    """The run's checkpoint holds the BO state (every told score, the last predictor); a run cut after 23 evaluations
    (mid-line) and resumed ends with the uninterrupted run's history, result and checkpointed state."""
    make = partial(Bananas, budget=40, seed=2, **FAST)
    full = tabular_run(tmp_path / "full", nb201_csv, make).run()
    saved = checkpoint.load(tmp_path / "full" / "checkpoint.pt")["strategy"]
    records = read_jsonl(tmp_path / "full" / HISTORY)
    assert [[r["genotype"], r["score"]] for r in records] == saved["history"] and saved["predictor"] is not None
    tabular_run(tmp_path / "cut", nb201_csv, make).run()
    lines = (tmp_path / "cut" / HISTORY).read_text().splitlines(keepends=True)
    (tmp_path / "cut" / HISTORY).write_text("".join(lines[:23]) + lines[23][:25])
    (tmp_path / "cut" / "result.json").unlink()
    resumed = tabular_run(tmp_path / "cut", nb201_csv, make)
    resumed.resume()
    assert len(resumed.records) == 23
    assert resumed.run() == {**full, "elapsed": read_json(tmp_path / "cut" / "result.json")["elapsed"]}
    assert history_without_timing(tmp_path / "cut") == history_without_timing(tmp_path / "full")
    again = checkpoint.load(tmp_path / "cut" / "checkpoint.pt")["strategy"]
    assert again["history"] == saved["history"] and torch.equal(again["predictor"]["params"],
                                                                saved["predictor"]["params"])


@pytest.mark.parametrize("kwargs, match", [({"k": 0}, "k=0"), ({"members": 0}, "members=0"),
                                           ({"lr": 0.0}, "lr=0.0"), ({"initial": 0}, "initial=0")])
def test_bad_settings_are_rejected(kwargs, match):
    """Nonpositive sizes or learning rate raise ValueError naming the value."""
    with pytest.raises(ValueError, match=match):
        Bananas(NB201Space(), **kwargs)


def test_bo_runs_end_to_end_on_the_nb201_table(nb201_csv, tmp_path):
    """``strategy=bo evaluator=tabular`` runs from the command line: 30 evaluations, the result is the best told
    score and the table reports its test accuracy, and the checkpoint holds the BO state."""
    run_entry("train_search.py", tmp_path, "search_space=nb201", "strategy=bo", "evaluator=tabular",
              f"evaluator.path={nb201_csv}", "strategy.budget=30", "strategy.epochs=20", "seed=1")
    result, records = read_json(tmp_path / "result.json"), read_jsonl(tmp_path / HISTORY)
    assert len(records) == 30 and result["evaluations"] == 30
    assert result["score"] == max(r["score"] for r in records) and 0 < result["benchmark"]["cifar10_test_200ep"] < 100
    table = Table(nb201_csv, NB201Space())
    assert all(r["score"] == table.query(r["genotype"], "cifar10_valid_12ep") for r in records)
    state = checkpoint.load(tmp_path / "checkpoint.pt")["strategy"]
    assert len(state["history"]) == 30 and state["predictor"]["params"].numel() > 0
