"""SNAS, ReinMax, Lambda-DARTS and OLES: one tiny search each in the DARTS space and in NAS-Bench-201, from the CLI."""
from __future__ import annotations

import math

import pytest

from conftest import read_json, run_entry

pytestmark = pytest.mark.usefixtures("one_thread")

# (strategy, space, extra overrides, a scalar the strategy logs). OLES rides on two runs, one per space. The tiny
# DARTS space (2 layers) has two reduction cells and no normal one: Lambda-DARTS aligns those two.
RUNS = [
    ("snas", "darts", [], "arch/tau"),
    ("snas", "nb201", ["strategy.oles=true"], "arch/oles/gm_score"),
    ("reinmax", "darts", ["strategy.oles=true"], "arch/oles/frozen_ops"),
    ("reinmax", "nb201", [], "arch/tau"),
    ("lambda_darts", "darts", ["strategy.cell_types=[reduce]"], "arch/lambda/alignment"),
    ("lambda_darts", "nb201", [], "arch/lambda/alignment"),
]


def scalar(run_dir, tag: str) -> list[float]:
    """The values a run logged for a TensorBoard scalar tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.parametrize("strategy, space, extra, tag", RUNS, ids=[f"{s}-{sp}" for s, sp, *_ in RUNS])
def test_new_strategies_search_in_both_spaces(cifar_mini, tmp_path, strategy, space, extra, tag):
    """train_search.py runs the strategy on real images, derives a genotype and logs the strategy's own scalar."""
    size = ["model.layers=2"] if space == "darts" else ["model.cells_per_stage=1"]
    run_entry("train_search.py", tmp_path, f"strategy={strategy}", f"search_space={space}", "dataset=imagefolder",
              f"dataset.root={cifar_mini}", "model.init_channels=4", *size, "epochs=1", "steps_per_epoch=2",
              "batch_size=8", *extra)
    result = read_json(tmp_path / "result.json")
    assert result["epochs"] == 1 and result["genotype"]
    values = scalar(tmp_path, tag)
    assert values, f"{tag} not logged"
    if tag in ("arch/tau", "arch/lambda/alignment", "arch/oles/frozen_ops"):
        assert all(math.isfinite(v) for v in values)
