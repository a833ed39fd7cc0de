"""The CUDA paths on a real GPU (skipped without one): resume, the unrolled step's precision, deterministic
repeatability and the Dirichlet path's host syncs. Ready to run the first time a GPU is available:
``pytest -q tests/test_cuda.py``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import run_entry
from darts.context import Context, configure_backends
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.drnas import DrNAS
from search_spaces.darts import DartsSpace
from search_spaces.toy import ToySpace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
TOY = ["search_space=toy", "dataset=fake", "dataset.num_train=64", "dataset.num_test=16", "dataset.image_size=8",
       "batch_size=8", "device=cuda", "deterministic=true"]


def history(run: Path) -> list[dict]:
    """genotypes.jsonl without the wall times."""
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_time"}
            for line in (run / "genotypes.jsonl").read_text().splitlines()]


def test_resume_on_cuda_ends_as_the_uninterrupted_run(tmp_path):
    """With deterministic=true a CUDA search stopped after epoch 1 and resumed ends bitwise as the uninterrupted run."""
    run_entry("train_search.py", tmp_path / "full", *TOY, "epochs=2", "strategy=drnas")
    run_entry("train_search.py", tmp_path / "cut", *TOY, "epochs=1", "strategy=drnas")
    run_entry("train_search.py", tmp_path / "cut", f"resume={tmp_path / 'cut'}", "epochs=2")
    assert history(tmp_path / "cut") == history(tmp_path / "full")
    full, cut = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["supernet"] for r in ("full", "cut"))
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_deterministic_cuda_searches_are_bitwise_repeatable(tmp_path):
    """Two CUDA searches with deterministic=true and the same seed write the same history."""
    for name in ("a", "b"):
        run_entry("train_search.py", tmp_path / name, *TOY, "epochs=2", "strategy=gdas")
    assert history(tmp_path / "a") == history(tmp_path / "b")


def test_the_unrolled_step_is_ieee_fp32_on_cuda():
    """On the GPU, with TF32 allowed around it, every convolution of the unrolled step runs with TF32 off, and the
    fp32 hypergradient is within 10% of the float64 one (TF32 measured 11-34% off in emulation)."""
    configure_backends("tf32", deterministic=False)
    seen, grads = [], []
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        space = DartsSpace(4, 3)
        supernet = space.build_supernet(10, Context(device=torch.device("cuda"))).to(dtype)
        for m in supernet.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
        strategy = DARTS(supernet, space, order=2)
        g = torch.Generator().manual_seed(1)
        batch = (torch.randn(8, 3, 16, 16, generator=g).to("cuda", dtype), torch.randint(10, (8,), generator=g).cuda())
        optimizer = torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9)
        grads.append(torch.cat([x.flatten() for x in strategy.unrolled_gradient(batch, batch, optimizer)]).double())
    assert seen and not any(seen) and torch.backends.cudnn.allow_tf32
    assert (grads[0] - grads[1]).norm() / grads[1].norm() < 0.1
    configure_backends("fp32", deterministic=False)


def test_the_dirichlet_path_makes_no_host_sync():
    """DrNAS's mixing weights (Dirichlet draws without argument validation) make no device-to-host sync."""
    space = ToySpace(8)
    strategy = DrNAS(space.build_supernet(10, Context(device=torch.device("cuda"))), space)
    strategy.mixing()  # warm-up: first-call allocations
    torch.cuda.set_sync_debug_mode("error")
    try:
        strategy.mixing()
        with strategy.one_sample():
            strategy.mixing()
    finally:
        torch.cuda.set_sync_debug_mode("default")
