"""Tests of the NAS-Bench-201 space (search_spaces/nb201.py) and its tabular benchmark."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from search_spaces.nb201 import NB201Benchmark
from darts.supernet import Mixing, SupernetOptions
from search_spaces.nb201 import NB201Space, build_network, build_supernet
from search_spaces.nb201.genotype import PRIMITIVES, NB201Genotype, format_arch, parse_arch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV = DATA / "nb201" / "nb201_accuracies.csv"
needs_csv = pytest.mark.skipif(not CSV.is_file(), reason=f"NB201 table not found at {CSV} (see shared/data/README.md)")

OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
HEADER = "index,arch,cifar10_valid_12ep,cifar10_test_200ep\n"


@pytest.fixture(scope="module")
def table() -> NB201Benchmark:
    if not CSV.is_file():
        pytest.skip(f"NB201 table not found at {CSV} (see shared/data/README.md)")
    return NB201Benchmark(CSV)


# ---- genotype text --------------------------------------------------------------------------

@needs_csv
def test_all_benchmark_strings_round_trip(table):
    """Every one of the 15,625 benchmark strings parses and formats back to itself, and they are all 5^6 cells."""
    assert len(table) == 15625
    genotypes = {parse_arch(text) for text in table.archs}
    assert all(format_arch(parse_arch(text)) == text for text in table.archs)
    assert len(genotypes) == 5 ** 6


def test_format_gives_the_benchmark_string():
    """A genotype built from nested tuples formats to the exact NB201 string; str() and parse agree."""
    g = NB201Genotype([[("nor_conv_3x3", 0)], [("nor_conv_3x3", 0), ("avg_pool_3x3", 1)],
                       [("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2)]])
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert format_arch(g) == str(g) == text
    assert parse_arch(text) == g and hash(parse_arch(text)) == hash(g)
    assert copy.deepcopy(g) == g and isinstance(copy.deepcopy(g), NB201Genotype)
    assert g.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")


@pytest.mark.parametrize("text, part", [
    ("", "3 '+'-separated nodes"),
    ("|none~0|+|none~0|none~1|", "3 '+'-separated nodes"),
    (ALL_NONE + "+|none~0|", "3 '+'-separated nodes"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "none~0|"),
    ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", "none-0"),
    ("|none~x|+|none~0|none~1|+|none~0|none~1|none~2|", "none~x"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "node 2"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2"),
    ("||+|none~0|none~1|+|none~0|none~1|none~2|", "''"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_3x3"),
    ("|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "valid ops"),
])
def test_malformed_strings_raise(text, part):
    """Malformed strings and unknown ops raise ValueError naming the bad part."""
    with pytest.raises(ValueError) as err:
        parse_arch(text)
    assert part in str(err.value)


def test_bad_genotype_values_raise():
    """Non-strings given to parse, and structurally wrong genotypes, raise ValueError."""
    with pytest.raises(ValueError):
        parse_arch(None)
    with pytest.raises(ValueError, match="3 nodes"):
        NB201Genotype([[("none", 0)]])
    with pytest.raises(ValueError, match="pair"):
        NB201Genotype([["none"], [("none", 0), ("none", 1)], [("none", 0), ("none", 1), ("none", 2)]])
    with pytest.raises(ValueError, match="parse_arch"):
        NB201Genotype(ALL_NONE)


# ---- networks -------------------------------------------------------------------------------

def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Reference numbers: NB201/NATS-Bench report params in MB (1e6) per arch; over the whole space on
# CIFAR-10 the minimum is 0.073306 (no conv in the cell, e.g. all skip_connect or all none) and the
# maximum 1.531546 (all nor_conv_3x3); CIFAR-100 max 1.537396, ImageNet16-120 min 0.080456 (as
# exported from the NB201 API, e.g. evoxbench's NB201 min/max table). The optimum's count is derived
# from TinyNetwork: fixed part 73,306 + per stage 5 cells x (4 conv3x3 + 1 conv1x1, each conv + BN).
@pytest.mark.parametrize("arch, num_classes, expected", [
    (ALL_SKIP, 10, 73_306),
    (ALL_NONE, 10, 73_306),
    (ALL_CONV3, 10, 1_531_546),
    (ALL_CONV3, 100, 1_537_396),
    (ALL_SKIP, 120, 80_456),
    (OPTIMUM, 10, 1_073_466),
])
def test_parameter_counts_match_reference(arch, num_classes, expected):
    """TinyNetwork at C=16, N=5 has exactly the reference parameter count."""
    assert n_params(build_network(arch, C=16, N=5, num_classes=num_classes)) == expected


def test_network_state_dict_names_match_reference():
    """Discrete networks keep the reference module names (all 6 edge ops per cell, none included)."""
    keys = set(build_network(OPTIMUM, C=8, N=1).state_dict())
    # cells: 0 = cell, 1 = residual block, 2 = cell, 3 = block, 4 = cell; edge 5 (3<-2) is nor_conv_1x1
    for key in ("stem.0.weight", "cells.0.layers.5.op.1.weight", "cells.1.conv_a.op.1.weight",
                "cells.1.downsample.1.weight", "cells.4.layers.0.op.2.running_mean", "lastact.0.weight",
                "classifier.bias"):
        assert key in keys
    assert not any(k.startswith("cells.0.layers.3.") for k in keys)  # skip_connect: no parameters
    assert build_network(OPTIMUM, C=8, N=1).cells[0].layers[0].op[1].bias is None  # affine BN: bias-free conv


def test_network_forward_gives_logits():
    """The discrete network maps images to logits, also when a node gets only `none` inputs."""
    x = torch.randn(2, 3, 16, 16)
    for arch in (OPTIMUM, ALL_NONE, "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|"):
        out = NB201Space(init_channels=8, cells_per_stage=1).build_network(arch, num_classes=10)(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def _loss(net, mixing):
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 7])
    return F.cross_entropy(net(x, mixing), y)


def test_supernet_soft_weights_forward_backward():
    """Soft mixing weights give logits and gradients to both the alphas and the op weights."""
    net = build_supernet(C=8, N=1, num_classes=10)
    assert net.alphas["cell"].shape == (6, 5)
    _loss(net, {"cell": Mixing(weights=F.softmax(net.alphas["cell"], dim=-1))}).backward()
    assert net.alphas["cell"].grad.abs().sum() > 0
    mixed = net.cells[0].dag.edges[0]
    assert mixed._ops[PRIMITIVES.index("nor_conv_3x3")].op[1].weight.grad.abs().sum() > 0


def test_supernet_search_cells_bn_settings():
    """Search-cell BN is affine-free, batch-statistics only by default, and the convs keep a bias."""
    conv = build_supernet(C=8, N=1).cells[0].dag.edges[0]._ops[PRIMITIVES.index("nor_conv_1x1")]
    bn = conv.op[2]
    assert not bn.affine and not bn.track_running_stats and conv.op[1].bias is not None
    tracked = NB201Space(8, 1, track_running_stats=True).build_supernet(10).cells[0].dag.edges[0]
    assert tracked._ops[PRIMITIVES.index("nor_conv_3x3")].op[2].track_running_stats
    assert build_supernet(C=8, N=1).cells[1].conv_a.op[2].affine  # residual blocks keep affine BN


def test_supernet_hard_index_runs_only_chosen_ops():
    """A hard index per edge (with straight-through weights) trains only the chosen ops and reaches the alphas."""
    net = build_supernet(C=8, N=1)
    space = NB201Space(8, 1)
    mixing = space.one_hot(OPTIMUM)["cell"]
    soft = F.softmax(net.alphas["cell"], dim=-1)  # [6, 5]
    hard = F.one_hot(torch.tensor(mixing.index), 5).float()
    _loss(net, {"cell": Mixing(weights=hard - soft.detach() + soft, index=mixing.index)}).backward()
    edges = net.cells[0].dag.edges
    assert edges[5]._ops[PRIMITIVES.index("nor_conv_1x1")].op[1].weight.grad is not None
    assert edges[5]._ops[PRIMITIVES.index("nor_conv_3x3")].op[1].weight.grad is None
    assert net.alphas["cell"].grad is not None and net.alphas["cell"].grad.abs().sum() > 0


def test_supernet_partial_channels():
    """PC-DARTS partial channels work in NB201 (ops see C/K channels) with soft and edge weights."""
    net = NB201Space(8, 1).build_supernet(10, options=SupernetOptions(partial_channels=2))
    assert net.cells[0].dag.edges[0].mixed._ops[PRIMITIVES.index("nor_conv_3x3")].op[1].in_channels == 4
    mixing = Mixing(weights=F.softmax(net.alphas["cell"], -1), edge_weights=torch.ones(6, requires_grad=True))
    _loss(net, {"cell": mixing}).backward()
    assert net.alphas["cell"].grad.abs().sum() > 0 and mixing.edge_weights.grad is not None
    with pytest.raises(ValueError):
        build_supernet(C=8, N=1, options=SupernetOptions(partial_channels=3))


# ---- space interface ------------------------------------------------------------------------

def test_derive_takes_argmax_over_all_ops():
    """derive picks each edge's largest weight among all 5 ops, `none` included."""
    w = torch.full((6, 5), 0.1)
    chosen = [3, 0, 4, 1, 2, 3]  # nor_conv_3x3, none wins edge 2<-0, avg_pool, skip, conv1x1, conv3x3
    w[torch.arange(6), torch.tensor(chosen)] = 0.6
    g = NB201Space().derive({"cell": w})
    assert format_arch(g) == "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    with pytest.raises(ValueError):
        NB201Space().derive({"cell": torch.rand(14, 8)})


def test_sample_is_valid_seeded_and_covers_every_op():
    """Samples are valid genotypes, reproducible from the seed, and reach every op on every edge."""
    space = NB201Space()
    draws = [space.sample(torch.Generator().manual_seed(0)) for _ in range(2)]
    assert draws[0] == draws[1]
    gen = torch.Generator().manual_seed(1)
    samples = [space.sample(gen) for _ in range(300)]
    assert all(space.parse(space.to_text(g)) == g for g in samples)
    for e in range(6):
        assert {g.ops[e] for g in samples} == set(PRIMITIVES)


def test_mutate_changes_exactly_one_edge():
    """A mutation is a valid genotype with exactly one edge's op changed, and every edge can mutate."""
    space, gen = NB201Space(), torch.Generator().manual_seed(2)
    parent, changed = parse_arch(OPTIMUM), set()
    for _ in range(200):
        child = space.mutate(parent, gen)
        diff = [e for e in range(6) if child.ops[e] != parent.ops[e]]
        assert len(diff) == 1 and isinstance(child, NB201Genotype)
        changed.add(diff[0])
    assert changed == set(range(6))


def test_one_hot_and_json_round_trip():
    """one_hot gives each edge's op index; to_json is JSON text that parses back to the genotype."""
    space = NB201Space()
    g = space.parse(OPTIMUM)
    assert list(space.one_hot(g)["cell"].index) == [3, 3, 3, 1, 3, 2]
    data = json.loads(json.dumps(space.to_json(g)))
    assert data == {"arch": OPTIMUM} and space.parse(data["arch"]) == g
    weights = F.one_hot(torch.tensor(space.one_hot(g)["cell"].index), 5).float()
    assert space.derive({"cell": weights}) == g


# ---- benchmark ------------------------------------------------------------------------------

@needs_csv
def test_benchmark_optimum_and_lookup(table):
    """The NB201 optimum has 94.37% CIFAR-10 test accuracy (200 epochs), by string or by genotype."""
    assert round(table.query(OPTIMUM, "cifar10_test_200ep"), 2) == 94.37
    row = table[parse_arch(OPTIMUM)]
    assert set(row) == set(table.columns) and row == table.query(OPTIMUM)
    assert table.best("cifar10_test_200ep")[0] == OPTIMUM
    assert OPTIMUM in table and "nonsense" not in table


@needs_csv
def test_benchmark_loads_fast():
    """Loading all 15,625 rows takes under a second."""
    start = time.perf_counter()
    NB201Benchmark(CSV)
    assert time.perf_counter() - start < 1.0


def test_benchmark_errors(tmp_path):
    """A missing file says what to pass; bad columns list the valid ones; unknown archs raise KeyError."""
    with pytest.raises(FileNotFoundError, match="benchmark.path="):
        NB201Benchmark(tmp_path / "absent.csv")
    path = tmp_path / "tiny.csv"
    path.write_text(HEADER + f"0,{OPTIMUM},84.4,94.37\n7,{ALL_SKIP},50.5,60.0\n")
    bench = NB201Benchmark(path)
    assert bench.columns == ("cifar10_valid_12ep", "cifar10_test_200ep") and bench.index_of(ALL_SKIP) == 7
    assert bench.query(ALL_SKIP) == {"cifar10_valid_12ep": 50.5, "cifar10_test_200ep": 60.0}
    with pytest.raises(ValueError, match="cifar10_valid_12ep"):
        bench.query(OPTIMUM, "cifar10_test")
    with pytest.raises(KeyError, match="none~0"):
        bench.query(ALL_NONE)
    with pytest.raises(ValueError, match="unknown op"):
        bench.query(ALL_NONE.replace("none~2", "conv~2"))


def test_benchmark_rejects_malformed_files(tmp_path):
    """A file without the index/arch header or with a non-numeric metric raises ValueError naming it."""
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("id,arch,acc\n0,x,1.0\n")
    with pytest.raises(ValueError, match="'index'"):
        NB201Benchmark(bad_header)
    bad_value = tmp_path / "b.csv"
    bad_value.write_text(HEADER + f"0,{OPTIMUM},84.4,n/a\n")
    with pytest.raises(ValueError, match="b.csv:2"):
        NB201Benchmark(bad_value)
