"""The cost model: NAS-Bench-201's FLOPs and parameters exactly, the additive cost equal to the count on built networks,
the expected cost's gradient in each strategy's mixing, the published penalties, and budgeted searches that end
within their target."""
from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
import torch.nn as nn

from conftest import SHARED_DATA, read_json, run_entry, tensorboard_tags
from darts.context import Context
from darts.cost.budget import Budget
from darts.cost.counting import count, count_network
from darts.cost.model import CostModel
from darts.cost.penalty import FBNet, LightNAS, ProxylessAddLinear, ProxylessMulLog, TFNAS
from darts.data.nats import NATSArchive
from darts.strategies.gradient.beta_darts import BetaDARTS
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.darts_minus import DARTSMinus
from darts.strategies.gradient.drnas import DrNAS
from darts.strategies.gradient.fair_darts import FairDARTS
from darts.strategies.gradient.gdas import GDAS, gumbel_noise
from darts.strategies.gradient.lambda_darts import LambdaDARTS
from darts.strategies.gradient.pcdarts import PCDARTS
from darts.strategies.gradient.sdarts import SDARTS
from darts.strategies.gradient.snas import SNAS, capped_gumbel_noise
from darts.supernet import Mixing
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.nb201.genotype import PRIMITIVES, NB201Genotype

TSS = SHARED_DATA / "nats" / "NATS-tss-v1_0-3ffb9-simple"
SEARCH = ("search_space=nb201", "dataset=imagefolder", "model.init_channels=4", "model.cells_per_stage=1",
          "epochs=3", "steps_per_epoch=8", "batch_size=16", "progress=false", "strategy.arch_lr=0.01")  # alphas that move in 24 steps


@pytest.fixture(scope="module")
def nb201() -> tuple[NB201Space, CostModel]:
    """The NB201 space at the benchmark size (C=16, N=5) and its cost model."""
    space = NB201Space()
    return space, CostModel.measure(space)


def test_hand_counted_layers():
    """A conv's FLOPs are kh*kw*C_in*C_out*H*W (+ C_out*H*W with a bias), a linear's in*out + out; pooling, BN and
    activations count nothing; a group of modules gets its share."""
    conv, fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 10)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    total, parts = count(model, torch.zeros(1, 3, 6, 6), {"fc": [fc]})
    assert total.flops == 3 * 3 * 3 * 4 * 36 + 4 * 36 + 4 * 10 + 10
    assert total.params == sum(p.numel() for p in model.parameters())
    assert parts["fc"].flops == 50 and parts["fc"].params == 50


def test_nb201_flops_and_params_equal_the_nats_archive(nb201):
    """Architectures 0, 11 and 284 at C=16, N=5: FLOPs and params (millions) equal NATS-Bench's stored values exactly,
    from the cost model and from the count on the built network."""
    space, model = nb201
    if not TSS.is_dir():
        pytest.skip(f"no NATS-Bench archive at {TSS}")
    archive = NATSArchive(TSS, space)
    for index in (0, 11, 284):
        record = archive.record(index).schedules[12]["cifar10-valid"]
        stored = next(iter(record.values()))
        genotype = space.parse(archive.archs[index])
        counted = count_network(space.build_network(genotype, 10), torch.zeros(1, 3, 32, 32))
        assert model.cost(genotype) == {"params": stored.params, "flops": stored.flops}
        assert (counted.params / 1e6, counted.flops / 1e6) == (stored.params, stored.flops)


def test_nb201_additive_cost_equals_the_built_network(nb201):
    """Every uniform cell, and 150 random cells: fixed part + chosen ops equals the count on the built network
    exactly (the exhaustive check over all 15,625 cells is ``python -m benchmarks.cost_model``)."""
    space, model = nb201
    g = torch.Generator().manual_seed(0)
    cells = [NB201Genotype.from_ops([op] * 6) for op in PRIMITIVES] + [space.sample(g) for _ in range(150)]
    for genotype in cells:
        counted = count_network(space.build_network(genotype, 10), torch.zeros(1, 3, 32, 32))
        assert (model.raw(genotype, "params"), model.raw(genotype, "flops")) == (counted.params, counted.flops)


@pytest.mark.parametrize("ops", ["darts", "s1"])
def test_darts_additive_cost_equals_the_built_network(ops):
    """200 sampled DARTS genotypes (100 in RobustDARTS's S1): the additive cost equals the built network's count."""
    space = DartsSpace(init_channels=4, layers=5, ops=ops)
    model = CostModel.measure(space)
    g = torch.Generator().manual_seed(1)
    for _ in range(200 if ops == "darts" else 100):
        genotype = space.sample(g)
        counted = count_network(space.build_network(genotype, 10), torch.zeros(1, 3, 32, 32))
        assert (model.raw(genotype, "params"), model.raw(genotype, "flops")) == (counted.params, counted.flops)


def tiny(cls: type, **kwargs):
    """A tiny NB201 supernet in float64, its strategy and cost model."""
    torch.manual_seed(0)
    space = NB201Space(init_channels=4, cells_per_stage=1)
    supernet = space.build_supernet(10, Context(), cls.supernet_options(**kwargs)).double()
    strategy = cls(supernet, space, **kwargs)
    with torch.no_grad():
        for p in strategy.arch_parameters():
            p.data = torch.randn_like(p, dtype=torch.float64)
    return strategy, CostModel.measure(space)


def gradient(strategy, model: CostModel, seed: int) -> list[torch.Tensor]:
    """d E[flops] / d arch parameters under one mixing drawn after ``seed``."""
    torch.manual_seed(seed)
    cost = model.expected(strategy.mixing(), "flops")
    return torch.autograd.grad(cost, strategy.arch_parameters(), allow_unused=True)


def softmax_form(p: torch.Tensor, c: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """d(sum_k p_k c_k)/d logits for p = softmax(logits / tau): p_j (c_j - p . c) / tau, per row."""
    return p * (c - (p * c).sum(-1, keepdim=True)) / tau


@pytest.mark.parametrize("cls", [DARTS, BetaDARTS, DARTSMinus, SDARTS, LambdaDARTS])
def test_expected_cost_gradient_softmax(cls):
    """The softmax family (DARTS, beta-DARTS, DARTS- (its auxiliary skip costs nothing in the derived network), SDARTS,
    Lambda-DARTS): p (c - p.c), in float64."""
    strategy, model = tiny(cls)
    c = model.tables["flops"]["cell"] / 1e6
    (grad,) = gradient(strategy, model, 0)
    torch.testing.assert_close(grad, softmax_form(torch.softmax(strategy.supernet.alphas["cell"], -1), c),
                               rtol=1e-12, atol=1e-15)


def test_expected_cost_gradient_fair_darts():
    """FairDARTS (sigmoid): s (1 - s) c, in float64."""
    strategy, model = tiny(FairDARTS)
    c = model.tables["flops"]["cell"] / 1e6
    (grad,) = gradient(strategy, model, 0)
    s = torch.sigmoid(strategy.supernet.alphas["cell"])
    torch.testing.assert_close(grad, s * (1 - s) * c, rtol=1e-12, atol=1e-15)


def test_expected_cost_gradient_pcdarts():
    """PC-DARTS: each edge's expected cost v_e = p . c scaled by its node-normalised beta q_e: d/d alpha = q_e p (c -
    p.c), d/d beta_e = q_e (v_e - sum over the node's edges of q v)."""
    strategy, model = tiny(PCDARTS, partial_channels=2)
    c = model.tables["flops"]["cell"] / 1e6
    d_alpha, d_beta = gradient(strategy, model, 0)
    p = torch.softmax(strategy.supernet.alphas["cell"], -1)
    q = strategy.edge_weights()["cell"].detach()
    v = (p * c).sum(-1).detach()
    torch.testing.assert_close(d_alpha, q[:, None] * softmax_form(p, c), rtol=1e-12, atol=1e-15)
    expected = torch.cat([qn * (vn - (qn * vn).sum()) for qn, vn in zip(q.split(strategy.node_sizes),
                                                                       v.split(strategy.node_sizes))])
    torch.testing.assert_close(d_beta, expected, rtol=1e-12, atol=1e-15)


def test_expected_cost_gradient_gumbel_samplers():
    """GDAS's straight-through sample and SNAS's Gumbel-softmax: (1/tau) p (c - p.c) with p = softmax((alpha + g) /
    tau), g the sample's own Gumbel noise (redrawn from the same seed)."""
    for cls, noise in ((GDAS, gumbel_noise), (SNAS, capped_gumbel_noise)):
        strategy, model = tiny(cls)
        strategy.tau = 0.7
        c = model.tables["flops"]["cell"] / 1e6
        (grad,) = gradient(strategy, model, 3)
        alphas = strategy.supernet.alphas["cell"].detach()
        torch.manual_seed(3)
        p = torch.softmax((alphas + noise(alphas)) / 0.7, -1)
        torch.testing.assert_close(grad, softmax_form(p, c, 0.7), rtol=1e-10, atol=1e-13)


def test_expected_cost_gradient_drnas():
    """DrNAS's Dirichlet sample w(alpha): the gradient is J^T c, J the sample's Jacobian in the concentrations (the
    same draw, ``one_sample``), in float64."""
    strategy, model = tiny(DrNAS)
    c = model.tables["flops"]["cell"] / 1e6
    alphas = strategy.supernet.alphas["cell"]
    with strategy.one_sample():
        (grad,) = torch.autograd.grad(model.expected(strategy.mixing(), "flops"), [alphas])
        w = strategy.mixing()["cell"].weights  # [E, K], the same draw
        rows = [torch.autograd.grad(w[e, k], [alphas], retain_graph=True)[0] for e in range(6) for k in range(5)]
    jacobian = torch.stack(rows).view(6, 5, 6, 5)  # d w[e, k] / d alpha[f, l]
    torch.testing.assert_close(grad, torch.einsum("ek,ekfl->fl", c, jacobian), rtol=1e-10, atol=1e-13)


def test_penalties_follow_their_formulas():
    """Each penalty's value on L = 2, c = 30, T = 20 is its paper's formula."""
    L, c = torch.tensor(2.0, dtype=torch.float64), torch.tensor(30.0, dtype=torch.float64)
    assert float(ProxylessMulLog(20)(L, c)) == pytest.approx(0.2 * 2 * (math.log(30) / math.log(20)) ** 0.3)
    assert float(ProxylessAddLinear(20)(L, c)) == pytest.approx(2 + 0.1 * 10 / 20)
    assert float(FBNet(20)(L, c)) == pytest.approx(2 * 0.2 * math.log(30) ** 0.6)
    assert float(TFNAS(20)(L, c)) == pytest.approx(2 + 0.1 * 0.5)
    light = LightNAS(20, lr=0.1)
    assert float(light(L, c)) == 2.0  # lambda starts at 0
    light.observe(30.0)
    assert light.lam == pytest.approx(0.05) and float(light(L, c)) == pytest.approx(2 + 0.05 * 0.5)
    light.observe(10.0)
    assert light.lam == 0.0  # bounded at 0: 0.05 - 0.05
    two_sided = LightNAS(20, lr=0.1, bound=False)  # LightNAS's own rule: lambda may go negative under the target,
    two_sided.observe(10.0)
    assert two_sided.lam == pytest.approx(-0.05)
    two_sided.observe(21.0)  # ... and is reset to 0 once over it with the wrong sign (search_imagenet.py trunc)
    assert two_sided.lam == 0.0
    with pytest.raises(ValueError, match="needs an expected cost above 1"):
        FBNet(20)(L, torch.tensor(0.5))


def test_budget_rejects_bad_settings():
    """An unknown metric, a non-positive target, a latency budget without a table: one-line errors."""
    with pytest.raises(ValueError, match="cost metric 'macs' is not valid; choose one of params, flops, latency"):
        Budget("macs", 1.0, LightNAS)
    with pytest.raises(ValueError, match="cost.target=0"):
        Budget("flops", 0, LightNAS)
    with pytest.raises(ValueError, match="cost.metric=latency needs latency_table=<file>"):
        Budget("latency", 5.0, LightNAS).bind(CostModel.measure(NB201Space(4, 1)))


def test_second_order_budget_is_the_chain_rule():
    """The second-order step's budgeted hypergradient is dB/dL * grad L + dB/dc * dc/dalpha (ProxylessNAS mul#log)."""
    strategy, model = tiny(DARTS)
    budget = Budget("flops", 0.5, partial(ProxylessMulLog, alpha=0.2, beta=0.3))
    budget.bind(model)
    strategy.budget = budget
    loss, g = torch.tensor(1.7, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    mixing = strategy.mixing()
    (out,) = strategy.budgeted([g], loss, mixing)
    p = torch.softmax(strategy.supernet.alphas["cell"], -1).detach()
    cost = float(model.expected(mixing, "flops").detach())
    r = math.log(cost) / math.log(0.5)
    d_cost = softmax_form(p, model.tables["flops"]["cell"] / 1e6)
    expected = 0.2 * r ** 0.3 * g + 0.2 * 1.7 * 0.3 * r ** -0.7 / (cost * math.log(0.5)) * d_cost
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-13)


@pytest.fixture(scope="module")
def unconstrained(cifar_mini, tmp_path_factory) -> dict:
    """A tiny NB201 DARTS search on real images without a budget: its result."""
    run = tmp_path_factory.mktemp("free") / "run"
    run_entry("train_search.py", run, *SEARCH, f"dataset.root={cifar_mini}")
    return read_json(run / "result.json")


@pytest.mark.parametrize("metric", ["flops", "params"])
def test_lightnas_search_ends_within_its_target(unconstrained, cifar_mini, tmp_path, metric):
    """A LightNAS-penalised DARTS search with a target halfway between the cheapest cell's cost and the unconstrained
    genotype's derives a cell within the target; the run records its expected and exact costs per epoch and the
    verdict in result.json."""
    cheapest = CostModel.measure(NB201Space(4, 1)).cost(NB201Genotype.from_ops(["none"] * 6))[metric]
    target = (cheapest + unconstrained["cost"][metric]) / 2
    run = tmp_path / "run"
    run_entry("train_search.py", run, *SEARCH, f"dataset.root={cifar_mini}", "cost=lightnas",
              f"cost.metric={metric}", f"cost.target={target}", "cost.penalty.lr=2")
    result = read_json(run / "result.json")
    assert result["budget"]["met"] and result["cost"][metric] <= target == result["budget"]["target"]
    records = [json.loads(line) for line in (run / "genotypes.jsonl").read_text().splitlines()]
    assert all(set(r["cost"]) == {"params", "flops"} for r in records)
    assert {f"arch/expected_{metric}", f"arch/{metric}", "budget/lambda", f"budget/derived_{metric}"} <= set(
        tensorboard_tags(run)["scalars"])


def test_latency_budget_search(cifar_mini, tmp_path, counted_time):
    """cost.metric=latency with a latency table of the search's space: the run records the genotype's latency (ms)
    beside its params and FLOPs, and the verdict."""
    from darts.cost.latency import LatencyTable
    from darts.cost.timing import Timer

    table = tmp_path / "latency.json"
    LatencyTable.measure(NB201Space(4, 1), timer=Timer.of(repeats=3, warmup=1)).save(table)
    run = tmp_path / "run"
    run_entry("train_search.py", run, *SEARCH, f"dataset.root={cifar_mini}", "epochs=1", "steps_per_epoch=3",
              "cost=tfnas", "cost.metric=latency", "cost.target=0.5", f"latency_table={table}")
    result = read_json(run / "result.json")
    assert set(result["cost"]) == {"params", "flops", "latency"} and result["cost"]["latency"] > 0
    assert result["budget"]["metric"] == "latency" and result["budget"]["met"] == (result["cost"]["latency"] <= 0.5)


def test_gradient_search_refuses_discrete_budget_settings(tmp_path):
    """constraint.* and objectives belong to discrete searches: a gradient search says so in one line."""
    proc = run_entry("train_search.py", tmp_path / "run", "dataset=fake", "constraint.flops=10", check=False)
    assert proc.returncode != 0 and "constraint.flops=10 is for a discrete search" in proc.stderr
    assert "Traceback" not in proc.stderr
