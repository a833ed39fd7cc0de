"""Activation checkpointing (``memory.checkpoint=cells``) changes memory, not results: outputs, losses, gradients of
the weights and the arch parameters, and batch-norm statistics equal the plain computation in float64, for first- and
second-order DARTS and the sampling strategies (the same random stream)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from darts.context import Context
from darts.selections.hessian import EIGENVALUE
from darts.settings import SGD
from darts.strategies.bilevel import search_epoch
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.drnas import DrNAS
from darts.strategies.gradient.gdas import GDAS
from darts.strategies.gradient.pcdarts import PCDARTS
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space

SPACES = {"nb201": lambda: NB201Space(init_channels=4, cells_per_stage=1),
          "darts": lambda: DartsSpace(init_channels=4, layers=3, ops="s5")}


def searched(space_name: str, cls: type, checkpoint: str, steps: int = 2, **kwargs) -> tuple:
    """Two bilevel steps from the same seed in float64: the supernet's state, the strategy's arch parameters and the
    last weight step's logits."""
    torch.manual_seed(0)
    space = SPACES[space_name]()
    context = Context(checkpoint=checkpoint)
    supernet = space.build_supernet(10, context, cls.supernet_options(**kwargs)).double()
    strategy = cls(supernet, space, **kwargs)
    for p in strategy.arch_parameters():
        p.data = p.data.double()
    strategy.arch_optimizer = torch.optim.Adam(strategy.arch_parameters(), lr=0.05)
    optimizer = SGD().build(supernet.weight_parameters())
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=g), torch.randint(10, (4,), generator=g))
               for _ in range(2 * steps)]
    torch.manual_seed(2)
    search_epoch(supernet, strategy, batches[:steps], batches[steps:], optimizer, 5.0, steps)
    with torch.no_grad():
        logits = supernet(batches[0][0])
    return supernet.state_dict(), [p.detach().clone() for p in strategy.arch_parameters()], logits


CASES = [(DARTS, {}), (DARTS, {"order": 2}), (GDAS, {}), (DrNAS, {}), (PCDARTS, {"partial_channels": 2})]


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("cls, kwargs", CASES, ids=["darts", "darts-2nd", "gdas", "drnas", "pcdarts"])
def test_checkpointed_cells_equal_the_plain_search(space_name, cls, kwargs):
    """After two arch + weight steps, every weight, buffer (BN statistics counted once) and arch parameter, and the
    logits, equal the plain run's exactly (float64; GDAS's and DrNAS's samples replayed)."""
    plain, plain_arch, plain_logits = searched(space_name, cls, "none", **kwargs)
    ckpt, ckpt_arch, ckpt_logits = searched(space_name, cls, "cells", **kwargs)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-12, atol=1e-14, msg=name)
    for a, b in zip(ckpt_arch, plain_arch):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ckpt_logits, plain_logits, rtol=1e-12, atol=1e-14)


def test_bad_checkpoint_setting_is_refused():
    """memory.checkpoint accepts none or cells, in one line."""
    with pytest.raises(ValueError, match="memory.checkpoint='layers' is not valid; choose one of none, cells"):
        Context(checkpoint="layers")


def test_checkpointed_search_end_to_end(cifar_mini, tmp_path):
    """memory.checkpoint=cells runs a search from the command line (with the Hessian monitor, which takes its second
    derivatives through the plain cells) and writes its result."""
    from conftest import read_json, run_entry

    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=nb201", "dataset=imagefolder", f"dataset.root={cifar_mini}",
              "model.init_channels=4", "model.cells_per_stage=1", "epochs=1", "steps_per_epoch=2", "batch_size=8",
              "memory.checkpoint=cells", "hessian.every=1", "hessian.iterations=3")
    record = json.loads((run / "genotypes.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record[EIGENVALUE]) and read_json(run / "result.json")["epochs"] == 1
