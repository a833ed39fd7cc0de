"""DrNAS's progressive learning: mixed ops widened to fewer partial-channel groups (old channels kept, new ones
copied from old ones, momentum carried), each edge pruned to its ops of largest alpha (the others skipped), arch
steps counted within each stage, bad stages refused, and a two-stage NB201 search on real images that runs with the
table and resumes exactly across the stage boundary."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import darts.app.search as train_search
from conftest import ROOT
from darts.context import Context
from darts.strategies.gradient.drnas import DrNAS
from darts.mixed_op import PartialChannels
from darts.supernet import Mixing, SupernetOptions
from darts.mixed_op import carry, carry_optimizer
from search_spaces.darts.ops import PRIMITIVES, SEARCH_OPS
from search_spaces.nb201 import NB201Space

STAGES = [{"epochs": 1, "partial_channels": 4}, {"epochs": 1, "partial_channels": 2, "keep_ops": 3}]


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every parameter and BN statistic random (so that copies can be told apart)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return module


@pytest.mark.parametrize("stride", [1, 2])
def test_widening_keeps_the_old_channels_and_copies_new_ones_from_old_ones(stride):
    """K 4 -> 2 on a DARTS-space edge: every tensor's first channels are the old ones, each new channel equals an
    old one (the same choice along every dimension of that size), momentum buffers are carried the same way, and the
    edge computes on twice the channels."""
    op = randomised(PartialChannels(16, stride, 4, PRIMITIVES, SEARCH_OPS))
    x = torch.randn(2, 16, 8, 8)
    optimizer = torch.optim.SGD(op.parameters(), 0.1, momentum=0.9)
    op(x, torch.full((len(PRIMITIVES),), 1 / len(PRIMITIVES))).sum().backward()
    optimizer.step()
    old = {n: t.clone() for n, t in op.state_dict().items()}
    widened = op.widen(2, torch.Generator().manual_seed(0))
    for name, t in op.state_dict().items():
        a = old[name]
        assert t[tuple(slice(0, n) for n in a.shape)].equal(a), name  # the old channels, unchanged
        assert all(m in (n, 2 * n) for n, m in zip(a.shape, t.shape)), name  # channel counts doubled
    maps = next(iter(widened.values()))[1]
    assert set(maps) >= {(4, 8)} and all(m[:n].equal(torch.arange(n)) for (n, _), m in maps.items())
    new_optimizer = carry_optimizer(optimizer, op.parameters(), widened)
    for p, (q, m) in widened.items():
        assert torch.equal(new_optimizer.state[p]["momentum_buffer"], carry(optimizer.state[q]["momentum_buffer"],
                                                                            p.shape, m))
        assert torch.equal(p.detach(), carry(q.detach(), p.shape, m))
    assert new_optimizer.param_groups[0]["lr"] == 0.1 and op.k == 2
    assert op(x, torch.full((len(PRIMITIVES),), 1 / len(PRIMITIVES))).shape == (2, 16, 8 // stride, 8 // stride)


def nb201(partial_channels: int = 4):
    """A tiny NB201 supernet (C = 8, one cell per stage) and DrNAS with two progressive stages."""
    torch.manual_seed(0)
    space = NB201Space(init_channels=8, cells_per_stage=1)
    supernet = space.build_supernet(10, Context(), SupernetOptions(partial_channels=partial_channels))
    return supernet, DrNAS(supernet, space, progressive=True, stages=STAGES, arch_start_epoch=1)


def test_pruning_keeps_each_edges_largest_alphas_and_skips_the_other_ops():
    """At the second stage's start every edge keeps its 3 ops of largest alpha: the Dirichlet draws put weight on
    those alone, the supernet skips the others (the same logits as computing them at weight 0), the mixed ops run at
    K = 2, and the returned optimizer trains the new weights."""
    supernet, strategy = nb201()
    with torch.no_grad():
        supernet.alphas["cell"].copy_(torch.randn_like(supernet.alphas["cell"]))
    optimizer = torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9)
    assert strategy.reshape(0, optimizer) is None
    new_optimizer = strategy.reshape(1, optimizer)
    top = supernet.alphas["cell"].detach().topk(3, dim=1).indices.sort(dim=1).values  # [E, 3]
    assert strategy.kept["cell"].equal(top)
    mixing = strategy.mixing()["cell"]
    outside = torch.ones_like(mixing.weights, dtype=torch.bool).scatter(1, top, False)
    assert (mixing.weights[outside] == 0).all() and torch.allclose(mixing.weights.sum(1), torch.ones(len(top)))
    assert mixing.kept == tuple(map(tuple, top.tolist()))
    assert all(m.k == 2 for m in supernet.modules() if isinstance(m, PartialChannels))
    assert supernet.structure.partial_channels == 2
    assert {id(p) for p in new_optimizer.param_groups[0]["params"]} == {id(p) for p in supernet.weight_parameters()}
    supernet.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(supernet(x, {"cell": mixing}), supernet(x, {"cell": Mixing(mixing.weights)}), atol=1e-6)


def test_arch_steps_start_anew_in_each_stage():
    """With arch_start_epoch=1 and two stages of 2 epochs, arch steps run in each stage's second epoch only."""
    _, strategy = nb201()
    strategy.stages = [type(s)(2, s.partial_channels, s.keep_ops) for s in strategy.stages]
    active = []
    for epoch in range(4):
        strategy.epoch_start(epoch, 4)
        active.append(strategy.arch_active)
    assert active == [False, True, False, True]


def test_bad_stages_are_refused_naming_the_setting():
    """The first stage's K must be the supernet's, and the stages must run the run's epochs."""
    with pytest.raises(ValueError, match="stages.0..partial_channels=4 must equal the supernet's K=1"):
        nb201(partial_channels=1)
    _, strategy = nb201()
    with pytest.raises(ValueError, match="strategy.stages run 2 epochs but epochs=5"):
        strategy.epoch_start(0, 5)


def history(run: Path) -> list[dict]:
    """genotypes.jsonl without wall times."""
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_time"}
            for line in (run / "genotypes.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("killed_after", [0, 1], ids=["at-the-boundary", "in-the-second-stage"])
def test_a_progressive_nb201_search_runs_with_the_table_and_resumes_exactly(cifar_mini, nb201_csv, tmp_path,
                                                                           killed_after):
    """Two stages (1 epoch at K = 4, then 3 ops kept at K = 2 for 2 epochs) on cifar10-mini: the table scores every
    epoch, the final genotype uses kept ops only, and a search killed after the first stage or inside the second and
    resumed ends as the uninterrupted one, bitwise."""
    overrides = ["strategy=drnas", "search_space=nb201", "model.init_channels=8", "model.cells_per_stage=1",
                 "strategy.progressive=true", "strategy.arch_start_epoch=0",
                 "strategy.stages=[{epochs:1,partial_channels:4},{epochs:2,partial_channels:2,keep_ops:3}]",
                 "epochs=3", "steps_per_epoch=2",
                 "batch_size=8", "dataset=imagefolder", f"dataset.root={cifar_mini}", "progress=false",
                 "device=cpu", "channels_last=false", f"benchmark.path={nb201_csv}"]
    with initialize_config_dir(str(ROOT / "darts" / "conf"), version_base="1.3"):
        cfg = compose("search", overrides)
    full = train_search.build(cfg, tmp_path / "full")
    result = full.run()
    kept = full.strategy.kept["cell"].tolist()
    chosen = full.space.one_hot(full.space.parse(result["genotype"]))["cell"].index
    assert [r["benchmark"]["cifar10_test_200ep"] > 0 for r in history(tmp_path / "full")] == [True] * 3
    assert all(k in kept[e] for e, k in enumerate(chosen)) and all(len(row) == 3 for row in kept)

    class Killed(Exception):
        """The process dies after the first stage's checkpoint."""

    cut = train_search.build(cfg, tmp_path / "cut")
    save = cut.save

    def save_then_die(epoch: int) -> None:
        save(epoch)
        if epoch == killed_after:
            raise Killed

    cut.save = save_then_die
    with pytest.raises(Killed):
        cut.run()
    resumed = train_search.build(cfg, tmp_path / "cut")
    resumed.resume()
    assert resumed.run()["genotype"] == result["genotype"]
    assert history(tmp_path / "cut") == history(tmp_path / "full")
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (tmp_path / "full", tmp_path / "cut"))
    assert all(torch.equal(a["supernet"][k], b["supernet"][k]) for k in a["supernet"])
