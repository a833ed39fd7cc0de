"""Architecture selection after a gradient search: DARTS-PT's perturbation-based selection
(darts/selections/darts_pt.py, projection.py) and R-DARTS's early stopping (darts_es.py), unit by unit and end to end
through train_search."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import darts.app.search as train_search
from conftest import read_json, tensorboard_tags
from darts.selections.darts_es import eigenvalue_stop, local_average
from darts.selections.darts_pt import DartsPT
from darts.selections.projection import Projection
from darts.strategies.base import SearchContext
from darts.strategies.gradient.darts import DARTS
from darts.supernet import Mixing
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.toy import PRIMITIVES, ToySpace

CONF = Path(__file__).resolve().parents[1] / "darts" / "conf"
SKIP, CONV = PRIMITIVES.index("skip_connect"), PRIMITIVES.index("conv_3x3")
OFF = -1e4  # an alpha whose softmax weight is exactly 0


class ToyNodeSpace(ToySpace):
    """The toy space with a topology choice: node 2 keeps one of its two inputs (edges 1 and 2)."""

    def input_choices(self) -> tuple[tuple[tuple[int, ...], int], ...]:
        """Node 2 keeps 1 of edges 1 (from node 0) and 2 (from node 1)."""
        return (((1, 2), 1),)


def known_supernet(space: ToySpace, alphas: list[list[float]]) -> tuple[DARTS, SearchContext]:
    """A toy supernet whose conv_3x3 ops output exactly 0 (zero kernels, BN of 0), with the given alphas [3, 2], and
    validation batches labelled by the supernet itself (100% accuracy); a skip_connect then carries all the signal,
    and removing one that the output depends on zeroes the logits (zero classifier bias): accuracy falls to the
    share of class 0."""
    torch.manual_seed(0)
    supernet = space.build_supernet(10)
    with torch.no_grad():
        for module in supernet.net.cell.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
        supernet.net.classifier.bias.zero_()
        supernet.alphas["cell"].copy_(torch.tensor(alphas))
    strategy = DARTS(supernet, space)
    supernet.train()
    g = torch.Generator().manual_seed(1)
    batches = []
    with torch.no_grad():
        for _ in range(2):
            x = torch.randn(16, 3, 8, 8, generator=g)
            batches.append((x, supernet(x, strategy.mixing()).argmax(-1)))
    assert len({int(c) for _, y in batches for c in y}) > 1  # not every label is class 0
    optimizer = torch.optim.SGD(supernet.weight_parameters(), 0.01)
    return strategy, SearchContext(supernet, [], batches, optimizer, 2)


def test_darts_pt_keeps_the_op_whose_removal_hurts_most():
    """On a supernet where conv_3x3 (the larger alpha on every edge) contributes nothing and the skip_connects of edges
    0 and 2 carry the whole output, DARTS-PT keeps skip_connect there, where the argmax keeps conv_3x3."""
    alphas = [[0.0, 1.0], [OFF, 1.0], [0.0, 1.0]]  # edge 1's skip has weight 0: the output is w2 * w0 * stem
    strategy, context = known_supernet(ToySpace(init_channels=4), alphas)
    decisions = []
    genotype = DartsPT(interval=0).select(strategy, ToySpace(init_channels=4), context, decisions.append)
    assert tuple(strategy.genotype()) == ("conv_3x3",) * 3
    assert genotype[0] == genotype[2] == "skip_connect"
    by_edge = {d["edge"]: d["without"] for d in decisions}
    assert sorted(by_edge) == [0, 1, 2]
    for e in (0, 2):
        assert by_edge[e]["conv_3x3"] == 100.0 and by_edge[e]["skip_connect"] < 50.0


def test_darts_pt_keeps_the_node_inputs_whose_removal_hurts_most():
    """Of node 2's inputs, DARTS-PT keeps the edge that carries the output (edge 1, a skip from the stem) and removes
    the one that carries nothing (edge 2: its input, node 1, is a conv_3x3 that outputs 0)."""
    strategy, context = known_supernet(ToyNodeSpace(init_channels=4), [[0.0, 0.0]] * 3)
    proj = Projection(("cell",), 3, 2, torch.device("cpu"))
    for e, op in enumerate((CONV, SKIP, SKIP)):
        proj.fix_op("cell", e, op)
    decision = DartsPT(interval=0).decide_node(strategy, context, proj, "cell", [1, 2], 1)
    assert decision["kept"] == [1] and decision["removed"] == [2]
    assert proj.fixed_weights()["cell"].tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


def test_darts_pt_decides_nodes_after_edges():
    """With a topology choice, DARTS-PT decides every edge's op, then the node's inputs: 3 op decisions, 1 node."""
    strategy, context = known_supernet(ToyNodeSpace(init_channels=4), [[0.0, 1.0]] * 3)
    decisions = []
    DartsPT(interval=0).select(strategy, ToyNodeSpace(init_channels=4), context, decisions.append)
    assert [d["decision"] for d in decisions] == ["op"] * 3 + ["node"]
    assert sorted(decisions[-1]["kept"] + decisions[-1]["removed"]) == [1, 2] and len(decisions[-1]["kept"]) == 1


def test_projection_fixes_decided_edges_and_keeps_the_others():
    """A decided edge runs its op alone at weight 1 (a hard index points to it, PC-DARTS's edge weight is 1), a removed
    edge has weight 0, an undecided edge keeps the strategy's weights and index, with gradient."""
    proj = Projection(("cell",), 3, 2, torch.device("cpu"))
    proj.fix_op("cell", 0, CONV)
    proj.fix_op("cell", 1, SKIP)
    proj.remove_edges("cell", [1])
    alphas = torch.zeros(3, 2, requires_grad=True)
    mixing = {"cell": Mixing(torch.softmax(alphas, -1), index=[SKIP, CONV, CONV], edge_weights=torch.full((3,), 0.5))}
    out = proj.mixing(mixing)["cell"]
    assert out.weights.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.5, 0.5]]
    assert out.index == [CONV, SKIP, CONV] and out.edge_weights.tolist() == [1.0, 1.0, 0.5]
    out.weights.sum().backward()
    assert alphas.grad[:2].abs().sum() == 0
    with pytest.raises(ValueError, match="must have an op"):
        proj.remove_edges("cell", [2])


def prefix_stops(values: list[float], **rule) -> list:
    """The rule after each epoch, as a run applies it (epoch t sees the measurements of epochs 0..t)."""
    return [eigenvalue_stop(list(range(t + 1)), values[:t + 1], **rule) for t in range(len(values))]


def test_early_stopping_triggers_as_the_paper_says():
    """R-DARTS sec. 4.3 (k = 5, w = 5, T = 0.75, not before epoch 10): a flat eigenvalue never stops the search; a jump
    at epoch 18 stops it right after epoch 18, where mean(lambda[9..13]) / mean(lambda[14..18]) = 1 / 2.8 < 0.75,
    returning epoch 18 - 2 - 5 = 11's genotype; a rise to a ratio just above 0.75 does not."""
    assert prefix_stops([1.0] * 30) == [None] * 30
    stops = prefix_stops([1.0] * 18 + [10.0] * 5)
    assert stops[:18] == [None] * 18
    assert (stops[18].decided_at, stops[18].epoch) == (18, 11) and stops[18].ratio == pytest.approx(1 / 2.8)
    assert local_average([1.0] * 18 + [10.0], 16, 5) == pytest.approx(2.8)
    mild = [1.0] * 18 + [1.0 / 0.76 * 5 - 4] + [1.0] * 4  # mean over the window 1/0.76: ratio 0.76
    assert prefix_stops(mild) == [None] * len(mild)


def test_early_stopping_waits_for_min_epoch():
    """A jump early in the search does not stop it while the epoch to return would be before ``min_epoch``."""
    values = [1.0] * 6 + [10.0] * 20
    assert prefix_stops(values) == [None] * len(values)
    assert prefix_stops(values, min_epoch=0)[7].epoch == 0


def search(tmp_path: Path, root: Path, *overrides: str, resume: bool = False) -> dict:
    """A tiny search on the real CIFAR-10 images (in ``root``) through train_search.search."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("search", ["dataset=imagefolder", f"dataset.root={root}", "progress=false",
                                 "device=cpu", "channels_last=false", "batch_size=8", "steps_per_epoch=2", "epochs=1",
                                 *overrides])
    cfg.resume = resume or None
    return train_search.search(cfg, tmp_path)


def decisions(run: Path) -> list[dict]:
    """The selection.jsonl records of a run."""
    return [json.loads(line) for line in (run / "selection.jsonl").read_text().splitlines()]


def test_darts_pt_end_to_end_in_the_darts_space(cifar_mini, tmp_path):
    """selection=darts_pt after a one-epoch DARTS-space search (3 candidate ops, to keep it short) decides all 14 edges
    of both cells, then 2 inputs of nodes 1-3; result.json and genotype.txt hold the genotype of those decisions."""
    primitives = ("none", "skip_connect", "max_pool_3x3")
    result = search(tmp_path, cifar_mini, "search_space=darts", "model.layers=3", "model.init_channels=4",
                    f"search_space.ops=[{','.join(primitives)}]", "selection=darts_pt",
                    "selection.interval=0", "selection.eval_batches=1", "selection.criterion=loss")
    records = decisions(tmp_path)
    assert [r["decision"] for r in records] == ["op"] * 28 + ["node"] * 6
    assert sorted((r["cell"], r["edge"]) for r in records[:28]) == [(t, e) for t in ("normal", "reduce")
                                                                    for e in range(14)]
    assert sorted((r["cell"], tuple(r["edges"])) for r in records[28:]) == sorted(
        (t, edges) for t in ("normal", "reduce") for edges, _ in DartsSpace().input_choices())
    weights = {t: torch.zeros(14, 3) for t in ("normal", "reduce")}
    for r in records[:28]:
        weights[r["cell"]][r["edge"], primitives.index(r["op"])] = 1.0
    for r in records[28:]:
        assert len(r["kept"]) == 2
        weights[r["cell"]][r["removed"]] = 0.0
    space = DartsSpace(ops=primitives)
    assert result["genotype"] == space.to_text(space.derive(weights))
    assert (tmp_path / "genotype.txt").read_text().strip() == result["genotype"]
    assert result["selection"]["method"] == "darts_pt" and result["selection"]["decisions"] == 34
    assert any(t.startswith("selection/decision") for t in tensorboard_tags(tmp_path)["tensors"])


def test_darts_pt_end_to_end_in_nb201_with_the_table(cifar_mini, nb201_csv, tmp_path):
    """selection=darts_pt in NB201, fine-tuning one epoch between decisions: one decision per edge, result.json holds
    the selected cell (the decisions' ops) and its benchmark accuracy."""
    result = search(tmp_path, cifar_mini, "search_space=nb201", "model.init_channels=4", "model.cells_per_stage=1",
                    f"benchmark.path={nb201_csv}", "selection=darts_pt", "selection.interval=1",
                    "selection.eval_batches=1")
    records = decisions(tmp_path)
    assert sorted(r["edge"] for r in records) == list(range(6))
    ops = {r["edge"]: r["op"] for r in records}
    assert NB201Space().parse(result["genotype"]).ops == tuple(ops[e] for e in range(6))
    assert 0 < result["benchmark"]["cifar10_test_200ep"] <= 100


def test_early_stopping_end_to_end_returns_the_earlier_genotype_and_resumes(cifar_mini, tmp_path):
    """selection=darts_es with a rule that fires as soon as it can (k = 1, w = 1) stops a 4-epoch search after epoch 1
    and reports epoch 0's genotype and metrics; resuming the stopped run (its result lost) searches no further."""
    rule = ["search_space=toy", "epochs=4", "selection=darts_es", "selection.threshold=1e9", "selection.k=1",
            "selection.window=1", "selection.min_epoch=0", "hessian.iterations=2"]
    result = search(tmp_path, cifar_mini, *rule)
    history = [json.loads(line) for line in (tmp_path / "genotypes.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1] and all("hessian_eigenvalue" in r for r in history)
    assert result["epochs"] == 2 and result["genotype"] == history[0]["genotype"]
    assert result["valid_acc"] == history[0]["valid_acc"]
    assert result["selection"]["stopped_after_epoch"] == 1 and result["selection"]["genotype_epoch"] == 0
    (tmp_path / "result.json").unlink()
    assert search(tmp_path, cifar_mini, *rule, resume=True) == result == read_json(tmp_path / "result.json")
    assert len((tmp_path / "genotypes.jsonl").read_text().splitlines()) == 2


def test_a_run_resumed_during_selection_redoes_it_exactly(cifar_mini, tmp_path):
    """A DARTS-PT run that lost its result (killed during the selection phase) and is resumed redoes the phase from the
    last epoch's checkpoint: the same decisions (scores included) and the same genotype."""
    settings = ["search_space=toy", "selection=darts_pt", "selection.interval=1", "selection.eval_batches=1"]
    result = search(tmp_path, cifar_mini, *settings)
    first = decisions(tmp_path)
    (tmp_path / "result.json").unlink()
    assert search(tmp_path, cifar_mini, *settings, resume=True) == result
    assert decisions(tmp_path) == first


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "selection").glob("*.yaml")))
def test_every_selection_config_composes_and_builds(option):
    """Each conf/selection option composes with the search config and builds its selection, named as its file."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("search", [f"selection={option}"])
    assert instantiate(cfg.selection).name == option
    assert "run" not in cfg  # no copy of it: the entry point hands the selection to the run


def test_selection_needs_a_gradient_search(tmp_path, cifar_mini, nb201_csv):
    """A discrete search refuses a selection it has no supernet for, naming the setting."""
    with pytest.raises(ValueError, match="selection=darts_pt"):
        search(tmp_path, cifar_mini, "strategy=random", "search_space=nb201", "evaluator=tabular",
               f"evaluator.path={nb201_csv}", "selection=darts_pt")
