"""beta-DARTS, Fair DARTS and DARTS-: their regularisers against the papers' formulas computed by hand, beta-DARTS's
schedule, Fair DARTS's sigmoid weights and thresholded derivation, DARTS-'s auxiliary skip, and tiny searches in the
DARTS and NB201 spaces."""
from __future__ import annotations

import json
from dataclasses import replace
import math
from pathlib import Path

import pytest
import torch
from conftest import read_json, run_entry, tensorboard_tags
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from darts.strategies.gradient.beta_darts import BetaDARTS
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.darts_minus import DARTSMinus
from darts.strategies.gradient.fair_darts import FairDARTS
from darts.supernet import CellDAG, SupernetOptions
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Benchmark, parse_arch
from search_spaces.toy import ToySpace

CONF = Path(__file__).resolve().parents[1] / "darts" / "conf"


def tiny_darts(auxiliary_skip: bool = False, dtype: torch.dtype = torch.float64, ops: str = "darts"):
    """A 3-cell DARTS space of op set ``ops`` at 4 channels and its supernet in ``dtype`` (with DARTS-'s auxiliary
    skips when asked), alphas drawn from N(0, 1)."""
    torch.manual_seed(0)
    space = DartsSpace(init_channels=4, layers=3, ops=ops)
    supernet = space.build_supernet(10, options=SupernetOptions(auxiliary_skip=auxiliary_skip)).to(dtype)
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.normal_()
    return space, supernet


def logit(p: float) -> float:
    """The alpha whose sigmoid is p."""
    return math.log(p / (1 - p))


def test_beta_decay_value_and_gradient_equal_the_formula():
    """beta-DARTS's penalty is lambda_t * mean over all 28 edges of log sum_k exp(alpha_ek), its gradient
    lambda_t * softmax(alpha_e) / 28, both computed by hand in float64."""
    space, supernet = tiny_darts()
    strategy = BetaDARTS(supernet, space, reg_start=0.0, reg_end=25.0)
    strategy.epoch_start(10, 50)  # lambda = 25 * 10 / 50 = 5
    alphas = supernet.arch_parameters()
    rows = [row for a in alphas for row in a.detach().tolist()]
    lse = [math.log(sum(math.exp(v) for v in row)) for row in rows]
    expected = 5.0 * sum(lse) / len(rows)
    penalty = strategy.arch_penalty()
    assert len(rows) == 28 and abs(penalty.item() - expected) <= 1e-12 * abs(expected)
    grads = torch.autograd.grad(penalty, alphas)
    for a, g in zip(alphas, grads):
        by_hand = torch.tensor([[5.0 * math.exp(v) / sum(math.exp(u) for u in row) / 28 for v in row]
                                for row in a.detach().tolist()], dtype=torch.float64)
        torch.testing.assert_close(g, by_hand, rtol=1e-12, atol=1e-15)


def compose_strategy(overrides: list[str]):
    """The composed search config of ``overrides`` and its strategy built on a toy supernet."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("search", overrides)
    space = ToySpace(init_channels=4)
    return cfg, instantiate(cfg.strategy, supernet=space.build_supernet(10), space=space)


@pytest.mark.parametrize("overrides", [["strategy=beta_darts"], ["+experiment=nb201_beta_darts"]])
def test_beta_darts_schedule_gives_the_official_weights(overrides):
    """With the configured epochs (DARTS space 50, NB201 100), lambda at the first, middle and last epoch is the
    official architect.py ``0 + 50*epoch/100``."""
    cfg, strategy = compose_strategy(overrides)
    epochs = cfg.epochs
    assert epochs == (100 if "nb201" in overrides[0] else 50)
    for epoch in (0, epochs // 2, epochs - 1):
        strategy.epoch_start(epoch, epochs)
        assert strategy.reg_weight == pytest.approx(0 + 50 * epoch / 100, abs=1e-12)


def test_zero_one_loss_value_and_gradient_equal_the_formula():
    """Fair DARTS's penalty is -w01 * mean over both cells' 7 ops (FairDARTS's op set, s5) of (sigmoid(alpha) - 0.5)^2,
    its gradient -w01 * 2 (s - 0.5) s (1 - s) / N, computed by hand in float64."""
    space, supernet = tiny_darts(ops="s5")
    strategy = FairDARTS(supernet, space, w01=10.0)
    with torch.no_grad():  # FairDARTS starts from zeros (where the loss is flat): draw alphas again
        for a in supernet.arch_parameters():
            a.normal_()
    alphas = supernet.arch_parameters()
    sig = [[1 / (1 + math.exp(-v)) for v in row] for a in alphas for row in a.detach().tolist()]
    n = sum(len(row) for row in sig)
    expected = -10.0 * sum((s - 0.5) ** 2 for row in sig for s in row) / n
    penalty = strategy.arch_penalty()
    assert n == 28 * 7 and abs(penalty.item() - expected) <= 1e-12 * abs(expected)
    grads = torch.autograd.grad(penalty, alphas)
    for a, g in zip(alphas, grads):
        by_hand = torch.tensor([[-10.0 * 2 * (s - 0.5) * s * (1 - s) / n for s in (1 / (1 + math.exp(-v)) for v in row)]
                                for row in a.detach().tolist()], dtype=torch.float64)
        torch.testing.assert_close(g, by_hand, rtol=1e-12, atol=1e-15)


def test_fair_darts_mixing_weights_are_sigmoids_of_alphas():
    """Fair DARTS starts from alphas 0 (every weight 0.5) and mixes with sigmoid(alpha) per op, independently of the
    other ops of the edge (not a softmax)."""
    space, supernet = tiny_darts(ops="s5")
    for t, m in FairDARTS(supernet, space).mixing().items():
        assert not supernet.alphas[t].any()
        assert torch.equal(m.weights, torch.full_like(m.weights, 0.5))
    strategy = FairDARTS(supernet, space)
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.normal_()
    for t, m in strategy.mixing().items():
        torch.testing.assert_close(m.weights, 1 / (1 + torch.exp(-supernet.alphas[t])), rtol=1e-15, atol=0)
        assert m.weights.sum(-1).sub(1).abs().max() > 0.1


def threshold_case(threshold: float):
    """Fair DARTS on alphas whose answer is known: every sigmoid 0.5 except the ops set below; its genotype."""
    space, supernet = tiny_darts(dtype=torch.float32, ops="s5")
    strategy = FairDARTS(supernet, space, op_threshold=threshold)
    op = {name: k for k, name in enumerate(space.ops.names("normal", 0))}
    with torch.no_grad():
        normal = supernet.alphas["normal"]
        normal[0, op["sep_conv_3x3"]] = logit(0.90)  # node 0 <- state 0: above 0.85, kept
        normal[1, op["skip_connect"]] = logit(0.80)  # node 0 <- state 1: below 0.85, dropped
        # node 1 (edges 2-4) stays at 0.5: no input survives, node 1 (state 3) is isolated
        normal[5 + 3, op["dil_conv_3x3"]] = logit(0.95)  # node 2 <- node 1: strongest, but node 1 is isolated
        normal[5 + 0, op["sep_conv_5x5"]] = logit(0.86)  # node 2 <- state 0: kept
        normal[9 + 4, op["avg_pool_3x3"]] = logit(0.99)  # node 3 <- node 2: kept
        normal[9 + 1, op["max_pool_3x3"]] = logit(0.84)  # node 3 <- state 1: dropped at 0.85
    return space, strategy.genotype()


def test_fair_darts_derivation_applies_the_threshold():
    """At the paper's 0.85, a node's two strongest edges stay only if their sigmoid reaches the threshold (else the pair
    becomes `none`), a node left without inputs is isolated (its readers drop it, the concat leaves it out) and a cell
    with every node isolated keeps its whole concat; a lower threshold keeps the 0.80 and 0.84 ops. The genotype
    builds a network."""
    space, genotype = threshold_case(0.85)
    assert list(genotype.normal) == [("sep_conv_3x3", 0), ("none", 1), ("none", 0), ("none", 1),
                                     ("none", 3), ("sep_conv_5x5", 0), ("avg_pool_3x3", 4), ("none", 1)]
    assert list(genotype.normal_concat) == [2, 4, 5]
    assert all(op == "none" for op, _ in genotype.reduce) and list(genotype.reduce_concat) == [2, 3, 4, 5]
    assert space.parse(space.to_text(genotype)) == genotype
    assert space.build_network(genotype, 10)(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    _, lower = threshold_case(0.75)
    assert ("skip_connect", 1) in lower.normal[:2] and ("max_pool_3x3", 1) in lower.normal[6:]


def test_darts_minus_at_skip_weight_zero_is_darts():
    """With beta = 0 (epoch T), DARTS- mixes exactly as DARTS and its supernet (auxiliary skips built) gives the same
    logits as the DARTS supernet without them, holding the same weights; the skips add parameters only on stride-2
    edges."""
    space, supernet = tiny_darts(auxiliary_skip=True)
    plain_space = DartsSpace(init_channels=4, layers=3)
    plain = plain_space.build_supernet(10).to(torch.float64)
    result = plain.load_state_dict(supernet.state_dict(), strict=False)
    assert not result.missing_keys and all(".skips." in k for k in result.unexpected_keys) and result.unexpected_keys
    skips = [(e.stride, s) for dag in (m for m in supernet.modules() if isinstance(m, CellDAG))
             for e, s in zip(dag.edges, dag.skips)]
    assert all(not list(s.parameters()) for stride, s in skips if stride == 1)
    assert sum(bool(list(s.parameters())) for stride, s in skips if stride == 2) == 2 * 4 * 2  # 2 cells x 4 nodes x 2
    minus = DARTSMinus(supernet, space)
    minus.epoch_start(50, 50)
    darts = DARTS(plain, plain_space)
    mixing = minus.mixing()
    assert all(m.skip_weight == 0 and torch.equal(m.weights, darts.mixing()[t].weights) for t, m in mixing.items())
    supernet.eval()
    plain.eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert torch.equal(supernet(x, mixing), plain(x, darts.mixing()))


def test_darts_minus_edge_adds_beta_times_its_skip():
    """With beta > 0 an edge's output exceeds its beta = 0 output by exactly beta * skip(x): the input itself at
    stride 1, the edge's own FactorizedReduce at stride 2; beta decays linearly from 1 to 0 over the epochs."""
    space, supernet = tiny_darts(auxiliary_skip=True)
    supernet.eval()
    minus = DARTSMinus(supernet, space)
    mixing = minus.mixing()["reduce"]  # weights [E, K]
    reduction = supernet.cells[1].dag  # 8 channels; edge 0 reads state 0 (stride 2), edge 4 node 0 (stride 1)
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    for e, skip in ((0, reduction.skips[0](x)), (4, x)):
        diff = reduction.edge(e, x, None, replace(mixing, skip_weight=0.3)) - \
            reduction.edge(e, x, None, replace(mixing, skip_weight=0.0))
        torch.testing.assert_close(diff, 0.3 * skip, rtol=1e-12, atol=1e-12)
        assert diff.abs().max() > 0
    assert reduction.edges[0].stride == 2 and reduction.edges[4].stride == 1
    for epoch, beta in ((0, 1.0), (25, 0.5), (49, 0.02)):
        minus.epoch_start(epoch, 50)
        assert minus.beta == pytest.approx(beta) and minus.mixing()["normal"].skip_weight == minus.beta


def test_darts_minus_needs_auxiliary_skips():
    """DARTS- on a supernet built without auxiliary skips is rejected, naming the setting."""
    space, supernet = tiny_darts()
    with pytest.raises(ValueError, match="auxiliary skips"):
        DARTSMinus(supernet, space)


SCALARS = {"beta_darts": "arch/beta_decay/weight", "fair_darts": "arch/zero_one_loss", "darts_minus": "arch/skip_beta"}
TINY = ["dataset=imagefolder", "epochs=2", "steps_per_epoch=2", "batch_size=8", "device=cpu"]


@pytest.mark.parametrize("strategy", sorted(SCALARS))
def test_tiny_search_in_the_darts_space(strategy, cifar_mini, tmp_path):
    """Each strategy searches 2 epochs on real images in a 3-cell DARTS space: a DARTS genotype per epoch and at the
    end, and its own scalar in TensorBoard."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, f"strategy={strategy}", f"dataset.root={cifar_mini}", "model.layers=3",
              "model.init_channels=4", *TINY)
    result = read_json(run / "result.json")
    assert DartsSpace().parse(result["genotype"]) and result["epochs"] == 2
    assert len((run / "genotypes.jsonl").read_text().splitlines()) == 2
    assert SCALARS[strategy] in tensorboard_tags(run)["scalars"]


@pytest.mark.parametrize("strategy", sorted(SCALARS))
def test_tiny_search_in_nb201_records_the_table(strategy, cifar_mini, nb201_csv, tmp_path):
    """Each strategy searches 2 epochs in a small NB201 supernet; every epoch's record holds the table's accuracies of
    that epoch's genotype."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, f"strategy={strategy}", "search_space=nb201", f"benchmark.path={nb201_csv}",
              f"dataset.root={cifar_mini}", "model.init_channels=4", "model.cells_per_stage=1", *TINY)
    records = [json.loads(line) for line in (run / "genotypes.jsonl").read_text().splitlines()]
    table = NB201Benchmark(nb201_csv)
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(r["benchmark"] == table.query(parse_arch(r["genotype"])) for r in records)
    assert read_json(run / "result.json")["benchmark"] == table.query(parse_arch(records[-1]["genotype"]))
