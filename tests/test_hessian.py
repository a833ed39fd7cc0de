"""The dominant arch-Hessian eigenvalue (darts/selections/hessian.py): Lanczos against the exact Hessian, the monitor's
side effects, and its logging during a search (arch/hessian_eigenvalue, genotypes.jsonl)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

import darts.app.search as train_search
from conftest import tensorboard_tags
from darts.selections.hessian import HessianMonitor, dominant_eigenvalue
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.drnas import DrNAS
from darts.supernet import Mixing
from search_spaces.toy import ToySpace

CONF = Path(__file__).resolve().parents[1] / "darts" / "conf"


def tiny_float64():
    """A toy-space supernet in float64 (training mode), its DARTS strategy and one batch."""
    torch.manual_seed(0)
    space = ToySpace(init_channels=3)
    supernet = space.build_supernet(10).double().train()
    with torch.no_grad():
        supernet.alphas["cell"].copy_(torch.randn(3, 2, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 5, 5, generator=g, dtype=torch.float64), torch.randint(10, (6,), generator=g))
    return space, supernet, DARTS(supernet, space), batch


def test_lanczos_equals_the_exact_largest_eigenvalue():
    """On a tiny float64 supernet (6 alphas, an indefinite Hessian whose negative eigenvalue is the largest in
    magnitude) the Lanczos eigenvalue of the arch Hessian of L_val equals the largest eigenvalue (eigvalsh) of the
    exact Hessian from torch.autograd.functional.hessian; with fewer steps it is a lower bound."""
    _, supernet, strategy, (x, y) = tiny_float64()
    alphas = supernet.alphas["cell"]

    def loss(a: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(supernet(x, {"cell": Mixing(F.softmax(a, -1))}), y)

    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, alphas.detach()).reshape(6, 6))  # [6]
    assert exact[-1] > 0 > exact[0] and -exact[0] > exact[-1]
    measured = dominant_eigenvalue(lambda: strategy.loss((x, y)), [alphas], iterations=20)
    assert measured.dtype == torch.float64
    assert measured.item() == pytest.approx(exact[-1].item(), rel=1e-9)
    assert dominant_eigenvalue(lambda: strategy.loss((x, y)), [alphas], iterations=2) <= exact[-1] * (1 + 1e-9)


def test_a_larger_negative_eigenvalue_does_not_hide_the_largest():
    """For H with eigenvalues -5, 1 and 2 (the negative one largest in magnitude) the result is 2, R-DARTS's
    max(eigvals(H)), not -5."""
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    hessian = q @ torch.diag(torch.tensor([-5.0, 1.0, 2.0], dtype=torch.float64)) @ q.T
    v = torch.randn(3, dtype=torch.float64, requires_grad=True)
    value = dominant_eigenvalue(lambda: 0.5 * v @ hessian @ v, [v], iterations=3)
    assert value.item() == pytest.approx(2.0, rel=1e-6)


def test_measuring_leaves_the_search_untouched():
    """A measurement restores the BN statistics and the random state, and leaves no gradients behind."""
    _, supernet, strategy, batch = tiny_float64()
    buffers = [b.clone() for b in supernet.buffers()]
    rng = torch.get_rng_state()
    value = HessianMonitor(every=1, batches=1, iterations=5).measure(strategy, supernet, [batch])
    assert isinstance(value, float) and value == value
    assert all(torch.equal(a, b) for a, b in zip(buffers, supernet.buffers()))
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in supernet.parameters())


def test_monitor_settings_are_validated_and_scheduled():
    """Bad settings raise ValueError naming them; measurements fall on every ``every``-th epoch and the last."""
    with pytest.raises(ValueError, match="hessian.iterations"):
        HessianMonitor(every=1, iterations=0)
    assert [e for e in range(7) if HessianMonitor(every=3).due(e, 7)] == [0, 3, 6]
    assert [e for e in range(5) if HessianMonitor(every=3).due(e, 5)] == [0, 3, 4]
    assert not any(HessianMonitor(every=0).due(e, 5) for e in range(5))


def test_a_strategy_without_second_derivatives_is_a_clear_error():
    """DrNAS's Dirichlet reparameterisation has no second derivative in torch: measuring names the strategy."""
    space = ToySpace(init_channels=3)
    supernet = space.build_supernet(10)
    batch = (torch.randn(4, 3, 5, 5), torch.randint(10, (4,)))
    with pytest.raises(ValueError, match="DrNAS"):
        HessianMonitor(every=1, iterations=2).measure(DrNAS(supernet, space), supernet, [batch])


def test_search_logs_the_eigenvalue_every_epoch(cifar_mini, tmp_path):
    """hessian.every=1 in a 2-epoch search logs arch/hessian_eigenvalue to TensorBoard and to each epoch's
    genotypes.jsonl record."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("search", ["search_space=toy", "dataset=imagefolder", f"dataset.root={cifar_mini}",
                                 "progress=false", "device=cpu", "channels_last=false", "batch_size=8",
                                 "steps_per_epoch=2", "epochs=2", "hessian.every=1", "hessian.iterations=3"])
    train_search.search(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "genotypes.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(isinstance(r["hessian_eigenvalue"], float) for r in records)
    assert "arch/hessian_eigenvalue" in tensorboard_tags(tmp_path)["scalars"]
