"""Op sets as data (search_spaces/darts/op_sets.py): the papers' op sets, RobustDARTS's S1-S4, derivation within the set,
unused edges, the `noise` op, and S1-S4 searched and retrained end to end."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import read_json, run_entry
from darts.app.config import CONF
from darts.context import Context
from darts.ops import Noise
from darts.supernet import Mixing, OpSet, SupernetOptions
from search_spaces.darts import DartsSpace
from search_spaces.darts.op_sets import OP_SETS, op_set

# SmoothDARTS / darts-pt / Beta-DARTS sota/cnn/spaces.py PRIMITIVES ('none' commented out), spaces_dict['s5'];
# DrNAS DARTS-space/genotypes.py and FairDARTS fairdarts/genotypes.py list the same seven ops
OFFICIAL_S5 = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
               "dil_conv_5x5")
# automl/RobustDARTS src/spaces.py primitives_2 .. primitives_4 (every edge of both cell types)
OFFICIAL_S2_S4 = {"s2": ("skip_connect", "sep_conv_3x3"), "s3": ("none", "skip_connect", "sep_conv_3x3"),
                  "s4": ("noise", "sep_conv_3x3")}
# Supernet weight counts (alphas excluded) of automl/RobustDARTS src/search/model_search.py Network(C, 10, layers,
# criterion, spaces_dict[s]), counted as sum(p.numel() for p in net.parameters()) on their code (its alphas are plain
# tensors, not parameters) at C=16, layers=8 (train_search.py's defaults) and at C=4, layers=5.
OFFICIAL_WEIGHTS = {("s1", 16, 8): 405146, ("s2", 16, 8): 665466, ("s3", 16, 8): 665466, ("s4", 16, 8): 624506,
                    ("s1", 4, 5): 23382, ("s2", 4, 5): 38294, ("s3", 4, 5): 38294, ("s4", 4, 5): 35734}


def preset_ops(name: str) -> OpSet:
    """The op set a search preset (``+experiment=name``) searches."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("search", [f"+experiment={name}"])
    return op_set(cfg.search_space.ops)


@pytest.mark.parametrize("preset", ["sdarts_rs", "sdarts_adv", "darts_pt", "beta_darts", "fair_darts", "drnas"])
def test_presets_search_their_papers_op_set(preset):
    """SDARTS, DARTS-PT, beta-DARTS, Fair DARTS and DrNAS search the DARTS space with the official 7 ops (no `none`)."""
    ops = preset_ops(preset)
    assert all(row == OFFICIAL_S5 for t in ("normal", "reduce") for row in ops.edges[t])


def test_darts_presets_keep_the_eight_ops():
    """DARTS's own presets search cnn/genotypes.py's 8 ops, `none` first."""
    for preset in ("darts_v1", "darts_v2"):
        assert preset_ops(preset).edges["normal"][0] == ("none", *OFFICIAL_S5)


def test_robust_darts_spaces_are_the_official_lists():
    """S2-S4 search the official op lists on every edge; S1 gives each edge its own pair (spot-checked edges)."""
    for name, ops in OFFICIAL_S2_S4.items():
        assert set(OP_SETS[name].edges["normal"]) == set(OP_SETS[name].edges["reduce"]) == {ops}
    s1 = OP_SETS["s1"]
    assert s1.k == 2 and s1.edges["normal"][5] == ("max_pool_3x3", "skip_connect")
    assert s1.edges["normal"][13] == ("dil_conv_3x3", "dil_conv_5x5") and s1.edges["reduce"][0] == ("max_pool_3x3",
                                                                                                     "avg_pool_3x3")
    assert s1.columns("normal") is None and "none" not in s1.primitives


@pytest.mark.parametrize("name", sorted(OP_SETS))
def test_derivation_stays_inside_the_op_set(name):
    """For random weights, every derived pair's op is one its edge searches and never `none`; 2 inputs per node."""
    space = DartsSpace(4, 5, ops=name)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        weights = {t: F.softmax(torch.randn(14, space.ops.k, generator=generator), -1) for t in space.cell_types}
        genotype = space.derive(weights)
        for t in space.cell_types:
            for k, (op, src) in enumerate(getattr(genotype, t)):
                assert op != "none" and op in space.ops.names(t, sum(range(2, k // 2 + 2)) + src)
        assert space.one_hot(genotype)  # every op is found on its edge
        sampled = space.mutate(space.sample(generator), generator)
        assert all(op in space.ops.primitives for t in space.cell_types for op, _ in getattr(sampled, t))


@pytest.mark.parametrize("name", ["s1", "s2", "s3", "s4"])
def test_supernet_weights_equal_robust_darts(name):
    """Each RobustDARTS space's supernet has exactly the official Network's weight count at both sizes."""
    for C, layers in ((16, 8), (4, 5)):
        supernet = DartsSpace(C, layers, ops=name).make_supernet(10, Context(), SupernetOptions())
        assert sum(p.numel() for p in supernet.weight_parameters()) == OFFICIAL_WEIGHTS[name, C, layers]
        assert all(a.shape == (14, OP_SETS[name].k) for a in supernet.arch_parameters())


def test_unused_edges_without_none_are_left_out():
    """Without `none`, a genotype's unused edges are None in its one-hot mixing, K in ``op_indices``, and the
    supernet's output equals the soft mixing with those edges' rows all zero (float64, reference path)."""
    torch.manual_seed(0)
    space = DartsSpace(4, 3, ops="s5")
    supernet = space.make_supernet(10, Context(fast=False), SupernetOptions()).double().eval()
    genotype = space.sample(torch.Generator().manual_seed(1))
    mixing = space.one_hot(genotype)
    assert sum(i is None for i in mixing["normal"].index) == 14 - 8 and space.choices == 8
    assert (space.op_indices(genotype) == 7).sum() == 2 * 6
    soft = {t: Mixing(torch.stack([torch.zeros(7, dtype=torch.float64) if i is None else
                                   F.one_hot(torch.tensor(i), 7).double() for i in m.index])) for t, m in mixing.items()}
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(supernet(x, mixing), supernet(x, soft), rtol=0, atol=1e-12)


def test_noise_op_is_standard_normal_and_ignores_its_input():
    """`noise` (RobustDARTS NoiseOp(stride, 0, 1)) returns N(0, 1) samples of the strided input's shape, the same for
    any input under the same random state, with no gradient to the input."""
    x = torch.randn(4, 8, 32, 32, requires_grad=True)
    torch.manual_seed(3)
    a = Noise(2)(x)
    torch.manual_seed(3)
    b = Noise(2)(torch.zeros_like(x))
    assert a.shape == (4, 8, 16, 16) and torch.equal(a, b) and not a.requires_grad
    y = Noise(1)(torch.randn(64, 16, 32, 32))
    assert abs(float(y.mean())) < 0.01 and abs(float(y.std()) - 1) < 0.01


@pytest.mark.parametrize("value, match", [
    ("s9", "search_space.ops='s9' is not a named op set; valid: darts, s5, s1, s2, s3, s4"),
    (["sep_conv_3x3", "conv_9x9"], r"unknown ops \['conv_9x9'\]"),
    ({"normal": ["skip_connect"]}, "needs exactly the cell types normal, reduce"),
    ({"normal": [["skip_connect"]] * 13, "reduce": ["skip_connect"]}, "lists 13 edges; the DARTS cell has 14"),
    (["none"], "searches only 'none'"),
    ({"normal": [["skip_connect"]] * 14, "reduce": ["skip_connect", "sep_conv_3x3"]}, "same number of ops"),
])
def test_bad_op_sets_are_refused_in_one_line(value, match):
    """A bad op set is a one-line ValueError naming the bad part and the valid choices."""
    with pytest.raises(ValueError, match=match) as info:
        DartsSpace(ops=value)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def robust_runs(cifar_mini, tmp_path_factory) -> dict[str, Path]:
    """A tiny DARTS search in each of S1-S4 on cifar10-mini, each found cell retrained with the DARTS recipe."""
    tiny = ("dataset=imagefolder", f"dataset.root={cifar_mini}", "model.layers=3", "model.init_channels=4",
            "epochs=1", "steps_per_epoch=1", "batch_size=8", "device=cpu")
    runs = {}
    for name in ("s1", "s2", "s3", "s4"):
        root = tmp_path_factory.mktemp(name)
        run_entry("train_search.py", root / "search", f"search_space.ops={name}", *tiny)
        run_entry("train_final.py", root / "final", f"genotype={root / 'search'}", *tiny)
        runs[name] = root
    return runs


@pytest.mark.parametrize("name", ["s1", "s2", "s3", "s4"])
def test_robust_darts_spaces_search_and_retrain(robust_runs, name):
    """Each of S1-S4 searches, derives a cell within its op set and retrains that cell: both runs write results."""
    root = robust_runs[name]
    space = DartsSpace(ops=name)
    genotype = space.parse(read_json(root / "search" / "result.json")["genotype"])
    assert space.one_hot(genotype)  # every op of the found cell is one its edge searches in that space
    final = read_json(root / "final" / "result.json")
    assert final["genotype"] == space.to_text(genotype) and 0 <= final["test_accuracy"] <= 100
