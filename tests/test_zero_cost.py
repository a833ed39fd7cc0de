"""Zero-cost proxies (darts/evaluators/proxies/), the zero-cost evaluator, the zero-cost warm start and the correlation
benchmark (benchmarks/zero_cost_correlation.py)."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from conftest import read_json, run_entry
from benchmarks.zero_cost_correlation import PROXIES as BENCHMARK_PROXIES
from benchmarks.zero_cost_correlation import first_batch, kendall, markdown, measure, spearman
from darts.data.datasets import Datasets, ImageData, image_folder
from darts.evaluators import TabularEvaluator, ZeroCostEvaluator
from darts.evaluators.proxies import (JACOV_K, PROXIES, as_score, get_proxy, grad_norm, hamming_kernel, jacov, jacov_score,
                           naswot, naswot_score, snip, synflow)
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY, DiscreteRun
from darts.data.search_split import SearchData
from darts.strategies.discrete.evolution import RegularizedEvolution
from darts.strategies.discrete.random_search import RandomSearch
from darts.evaluators.warm_start import zero_cost_warm_start
from search_spaces.nb201 import NB201Benchmark, NB201Space
from search_spaces.toy import ToySpace

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def images(cifar_mini) -> Datasets:
    """4 real CIFAR-10 training images per class (40 in all)."""
    xs, ys = [], []
    for label, folder in enumerate(sorted(p for p in (cifar_mini / "train").iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.png"))[:4]:
            xs.append(np.asarray(Image.open(path).convert("RGB")))
            ys.append(label)
    classes = tuple(sorted(p.name for p in (cifar_mini / "train").iterdir() if p.is_dir()))
    data = ImageData(torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.tensor(ys), classes,
                     (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    return Datasets(data, data)


@pytest.fixture(scope="module")
def batch(images) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 8 real images, as the evaluator draws it."""
    return next(iter(SearchData(lambda: images, 0.5, 0).weight_loader(8, 0)))


def linear_net(w1: list[list[float]], w2: list[list[float]], batchnorm: bool = False) -> nn.Sequential:
    """x -> W2 relu(W1 x) without biases (optionally a BatchNorm1d after W1)."""
    first, second = nn.Linear(len(w1[0]), len(w1), bias=False), nn.Linear(len(w1), len(w2), bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor(w1))
        second.weight.copy_(torch.tensor(w2))
    return nn.Sequential(first, *([nn.BatchNorm1d(len(w1))] if batchnorm else []), nn.ReLU(), second)


def test_synflow_of_a_two_layer_linear_net_is_twice_its_path_sum():
    """synflow of x -> W2 relu(W1 x) is sum |W1 * dR/dW1| + |W2 * dR/dW2| = 2 R, R = 1^T |W2| |W1| 1 (BN removed)."""
    w1, w2 = [[1.0, -2.0], [-0.5, 3.0], [0.25, 1.0]], [[2.0, -1.0, 0.5]]
    paths = float(torch.tensor(w2).abs() @ torch.tensor(w1).abs() @ torch.ones(2))
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    assert synflow(linear_net(w1, w2, batchnorm=True), x, y) == pytest.approx(2 * paths, rel=1e-12)


def test_grad_norm_and_snip_equal_their_formulas_on_a_linear_classifier():
    """For logits W x, dL/dW = (softmax(W x) - onehot(y)) x^T / B: grad_norm = ||dL/dW||, snip = sum |W * dL/dW|."""
    torch.manual_seed(0)
    net = nn.Linear(3, 4, bias=False)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    with torch.no_grad():
        grad = (F.softmax(x @ net.weight.T, dim=1) - F.one_hot(y, 4)).T @ x / len(x)  # [4, 3]
    assert grad_norm(net, x, y) == pytest.approx(float(grad.norm()), rel=1e-5)
    assert snip(net, x, y) == pytest.approx(float((net.weight.detach() * grad).abs().sum()), rel=1e-5)


def test_jacov_score_of_uncorrelated_and_of_identical_jacobians():
    """Uncorrelated rows (Sigma = I) score -B (log(1 + k) + 1/(1 + k)); a linear net's identical rows (Sigma = all
    ones: eigenvalues B and 0) score -(log(B + k) + 1/(B + k)) - (B - 1)(log k + 1/k)."""
    k = JACOV_K
    orthogonal = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    assert jacov_score(orthogonal) == pytest.approx(-2 * (math.log(1 + k) + 1 / (1 + k)), rel=1e-9)
    B = 3
    net = nn.Linear(4, 2)
    expected = -(math.log(B + k) + 1 / (B + k)) - (B - 1) * (math.log(k) + 1 / k)
    assert jacov(net, torch.randn(B, 4), torch.zeros(B, dtype=torch.long)) == pytest.approx(expected, rel=1e-6)


def test_naswot_kernel_counts_agreements_of_binary_codes():
    """K_H = N_A - Hamming distance, and naswot = log|K_H| of the ReLU codes of the batch, here by hand."""
    codes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    kernel = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 0.0], [1.0, 0.0, 2.0]])  # det = 4
    assert torch.equal(hamming_kernel(codes), kernel)
    assert naswot_score(kernel) == pytest.approx(math.log(4))
    net = linear_net([[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0]])  # ReLU codes = signs of x
    x = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    assert naswot(net, x, torch.zeros(3, dtype=torch.long)) == pytest.approx(math.log(4))
    assert naswot_score(torch.ones(2, 2)) == -math.inf


class DeadBranch(nn.Module):
    """x -> linear(relu(x)); a second ReLU is computed but reaches no output."""

    def __init__(self, dead: bool):
        super().__init__()
        self.used, self.unused, self.dead, self.head = nn.ReLU(), nn.ReLU(), dead, nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dead:
            self.unused(-x)
        return self.head(self.used(x))


def test_naswot_counts_only_the_relus_that_reach_the_output():
    """A ReLU whose output reaches no logit adds nothing to K_H (the reference counts the ReLUs backward visits)."""
    x, y = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]), torch.zeros(3, dtype=torch.long)
    assert naswot(DeadBranch(dead=True), x, y) == naswot(DeadBranch(dead=False), x, y) == pytest.approx(math.log(4))


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_each_proxy_is_finite_deterministic_and_leaves_the_network_unchanged(name, batch):
    """On an NB201 conv cell every proxy is finite, repeats exactly, and the network's state is untouched."""
    torch.manual_seed(0)
    net = NB201Space(init_channels=4, cells_per_stage=1).build_network(NB201Space().parse(ALL_CONV), 10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first, again = PROXIES[name](net, *batch), PROXIES[name](net, *batch)
    assert math.isfinite(first) and first == again
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


SIGNED = ("plain", "grasp")  # signed sums: a cell of convs may score below 0


def test_a_network_of_none_cells_scores_lowest(batch):
    """With every edge `none` the logits ignore the input: every unsigned proxy scores it below a conv cell (the cells'
    convs add nothing to the saliencies, jacov and epe_nas are undefined, naswot and zen -inf, all ranking last as
    scores); plain and grasp, signed, are exactly 0 (every weight gradient is)."""
    space = NB201Space(init_channels=4, cells_per_stage=1)
    nets = {arch: space.build_network(space.parse(arch), 10) for arch in (ALL_NONE, ALL_CONV)}
    for name, proxy in PROXIES.items():
        empty, conv = as_score(proxy(nets[ALL_NONE], *batch)), as_score(proxy(nets[ALL_CONV], *batch))
        assert empty == 0.0 if name in SIGNED else empty < conv, name
    assert synflow(nets[ALL_NONE], *batch) == 0.0
    assert math.isnan(jacov(nets[ALL_NONE], *batch)) and naswot(nets[ALL_NONE], *batch) == -math.inf


def test_an_unknown_proxy_is_one_line_naming_the_valid_ones():
    """proxy=foo raises a one-line ValueError listing every proxy, from get_proxy and from the evaluator."""
    with pytest.raises(ValueError, match="proxy='foo'.*synflow, grad_norm, snip, jacov, naswot, fisher, grasp, plain, "
                                         "epe_nas, zen, l2_norm, flops, params$") as err:
        get_proxy("foo")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="choose one of synflow"):
        ZeroCostEvaluator(ToySpace(), None, proxy="foo")


def test_the_evaluator_scores_on_one_seeded_batch_and_rejects_a_fidelity(images):
    """The same index repeats its score, another index (other initial weights) differs; a fidelity is refused."""
    space = NB201Space(init_channels=4, cells_per_stage=1)
    evaluator = ZeroCostEvaluator(space, SearchData(lambda: images, 0.5, 0), "naswot", batch_size=8)
    evaluator.prepare()
    genotype = space.parse(ALL_CONV)
    first, again, other = (evaluator.evaluate(genotype, i) for i in (3, 3, 4))
    assert first.score == again.score != other.score and first.cost > 0 and first.metrics == {"naswot": first.score}
    with pytest.raises(ValueError, match="takes no fidelity"):
        evaluator.evaluate(genotype, 3, fidelity=1)
    too_big = ZeroCostEvaluator(space, SearchData(lambda: images, 0.5, 0), batch_size=64)
    with pytest.raises(ValueError, match="batch_size=64 exceeds the 20 samples"):
        too_big.prepare()


@pytest.mark.parametrize("space", [ToySpace(init_channels=4), NB201Space(init_channels=4, cells_per_stage=1)],
                         ids=["toy", "nb201"])
@pytest.mark.parametrize("strategy", [partial(RandomSearch, budget=4, seed=0),
                                      partial(RegularizedEvolution, budget=4, population=2, sample=2, seed=0)],
                         ids=["random", "evolution"])
def test_searches_run_with_the_zero_cost_evaluator(images, tmp_path, space, strategy):
    """Random search and evolution finish a 4-evaluation search scored by synflow; the best score is the max."""
    data = SearchData(lambda: images, 0.5, 0)
    run = DiscreteRun(tmp_path, space, data, strategy, partial(ZeroCostEvaluator, batch_size=8))
    result = run.run()
    records = read_jsonl(tmp_path / HISTORY)
    assert len(records) == 4 and result["score"] == max(r["score"] for r in records)
    assert all(math.isfinite(r["synflow"]) and r["cost"] > 0 for r in records)


def test_warm_start_is_the_best_distinct_genotypes_of_the_pool_and_seeds_evolution(images, nb201_csv, tmp_path):
    """The warm start returns the `keep` best distinct pool genotypes by the proxy (deterministically), and an
    evolution run on the NB201 table evaluates them first, as its initial population."""
    space = NB201Space(init_channels=4, cells_per_stage=1)
    data = SearchData(lambda: images, 0.5, 0)
    warm = partial(zero_cost_warm_start, proxy="synflow", pool=12, keep=4, seed=3, batch_size=8)
    genotypes = warm(space=space, data=data)
    texts = [space.to_text(g) for g in genotypes]
    assert len(set(texts)) == 4 and texts == [space.to_text(g) for g in warm(space=space, data=data)]
    run = DiscreteRun(tmp_path, space, data, partial(RegularizedEvolution, budget=8, population=4, sample=2, seed=0),
                      partial(TabularEvaluator, path=str(nb201_csv)), warm_start=warm)
    run.run()
    assert [r["genotype"] for r in read_jsonl(tmp_path / HISTORY)][:4] == texts


def test_warm_start_zero_cost_runs_from_the_command_line(cifar_mini, nb201_csv, tmp_path):
    """train_search.py ... warm_start=zero_cost scores the pool, then evolution runs on the table to its budget."""
    proc = run_entry("train_search.py", tmp_path, "search_space=nb201", "model.init_channels=4",
                     "model.cells_per_stage=1", "strategy=evolution", "strategy.budget=6", "strategy.population=3",
                     "evaluator=tabular", f"evaluator.path={nb201_csv}", "dataset=imagefolder",
                     f"dataset.root={cifar_mini}", "warm_start=zero_cost", "warm_start.pool=6",
                     "warm_start.batch_size=8", "seed=1")
    assert read_json(tmp_path / "result.json")["evaluations"] == 6
    assert "of 6 sampled genotypes" in proc.stdout + proc.stderr  # the warm start's log line


def test_correlations_match_scipy_and_hand_values():
    """Spearman's rho and Kendall's tau-b equal hand values on a swap and scipy's on data with ties."""
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # (5 concordant - 1 discordant) / 6
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)
    a[3] = a[7] = -np.inf  # undefined proxy values, tied last
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)
    assert kendall(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, rel=1e-12)


def test_small_correlation_run_writes_resumable_rows(nb201_csv, batch, tmp_path):
    """12 table architectures: every proxy value is a number, a rerun recomputes nothing, and the table has a row per
    proxy with correlations in [-1, 1]."""
    table = NB201Benchmark(nb201_csv)
    space, out = NB201Space(init_channels=4, cells_per_stage=1), tmp_path / "values.csv"
    rows = measure(table, space, batch, 12, 0, out)
    assert len(rows) == 12 and len(out.read_text().splitlines()) == 13
    assert all(not math.isnan(as_score(float(r[p]))) for r in rows for p in BENCHMARK_PROXIES)
    assert measure(table, space, batch, 12, 0, out) == rows and len(out.read_text().splitlines()) == 13
    lines = markdown(rows).splitlines()[2:]
    assert len(lines) == len(BENCHMARK_PROXIES)
    assert all(-1 <= float(line.split("|")[2]) <= 1 for line in lines)
    other = tmp_path / "other.csv"
    other.write_text("index,arch,cifar10_test_200ep,synflow,seconds\n")
    with pytest.raises(ValueError, match="other.csv has the columns .* pass a new file"):
        measure(table, space, batch, 12, 0, other)


def test_the_benchmark_scores_on_the_batch_of_a_zero_cost_search(cifar_mini):
    """first_batch is the batch a ZeroCostEvaluator of a search with the same seed draws (train_portion 0.5)."""
    x, y = first_batch(cifar_mini, 8, 0)
    evaluator = ZeroCostEvaluator(ToySpace(), SearchData(lambda: image_folder(str(cifar_mini)), 0.5, 0), batch_size=8)
    evaluator.prepare()
    assert x.shape == (8, 3, 32, 32) and torch.equal(x, evaluator.batch[0]) and torch.equal(y, evaluator.batch[1])
