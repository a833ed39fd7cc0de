"""The latency table (``darts.cost.latency``) and its command (``darts-latency``): structure, not speed (timings on
shared cores are noisy, so no test compares them)."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import latency as benchmark
from darts.app.latency import main
from darts.cost.latency import LatencyTable, default_path
from darts.cost.model import CostModel, probes
from darts.cost.timing import Timer
from darts.supernet import Mixing
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space

TINY = {"init_channels": 2, "cells_per_stage": 1}
QUICK = Timer.of(repeats=2, warmup=0)


pytestmark = pytest.mark.usefixtures("counted_time")  # real timings: the benchmark, not the tests


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space(**TINY)


@pytest.fixture(scope="module")
def table(space) -> LatencyTable:
    return LatencyTable.measure(space, timer=QUICK)


def test_one_entry_per_op_and_shape(table, space):
    """Each op with compute appears once per input shape it is given (NB201: 4 ops x 3 stages), not once per cell."""
    assert len(table.entries) == 4 * 3
    assert all(ms > 0 for ms in table.entries.values())
    assert {shape for _, shape in table.entries} == {(1, 2, 32, 32), (1, 4, 16, 16), (1, 8, 8, 8)}
    assert len(table.info["probe_ms"]) == len(table.info["probe_edge_ms"]) == len(space.cost_probes())


def test_round_trip(table, space, tmp_path):
    """A saved table loads back with the same key, entries and fixed part."""
    path = table.save(tmp_path / "sub" / "table.json")
    loaded = LatencyTable.load(path, space)
    assert (loaded.key, loaded.entries, loaded.fixed) == (table.key, table.entries, table.fixed)
    assert not list(path.parent.glob("*.tmp"))  # written through a renamed temporary file


@pytest.mark.parametrize("field, change", [("sizes", None), ("torch", "0.0.1"), ("device", "Some Other CPU")])
def test_mismatched_key_is_refused_in_one_line(table, space, tmp_path, field, change):
    """A table of another space size, torch version or processor is refused with one line naming what differs."""
    path = table.save(tmp_path / "table.json")
    if change is not None:
        data = json.loads(path.read_text())
        data["key"][field] = change
        path.write_text(json.dumps(data))
    other = NB201Space(init_channels=3, cells_per_stage=1) if change is None else space
    with pytest.raises(ValueError) as err:
        LatencyTable.load(path, other)
    message = str(err.value)
    assert "\n" not in message and field in message and "--refresh" in message


def test_not_a_table_is_refused(tmp_path, space):
    """A file that is not a latency table is refused with one line."""
    path = tmp_path / "table.json"
    path.write_text('{"entries": 3}')
    with pytest.raises(ValueError, match="is not a latency table"):
        LatencyTable.load(path, space)


def test_missing_entry_is_named(table, space):
    """Asking for an op at a shape the table lacks raises a ValueError naming the op and the shape."""
    probe = next(p for p in probes(space, 10, 32) if ("cell", 0, "nor_conv_3x3") in p.units)
    shape = probe.units[("cell", 0, "nor_conv_3x3")][0][1]
    partial = LatencyTable(table.key, {k: v for k, v in table.entries.items() if k[1] != shape}, table.fixed)
    with pytest.raises(ValueError, match=rf"ReLUConvBN at input \[{', '.join(map(str, shape))}\]"):
        partial.edge_latency(probe, ("cell", 0, "nor_conv_3x3"))


def test_cost_model_latency(table, space):
    """With the table, the cost model's latency of ops with compute is positive, `none` costs nothing, a genotype's
    latency is the fixed part plus its ops', and the expected latency is differentiable in the arch parameters."""
    model = CostModel.measure(space, latency=table)
    latency = model.tables["latency"]["cell"]  # [E, K]
    names = space.ops.names("cell", 0)
    for op in ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"):
        assert (latency[:, names.index(op)] > 0).all()
    assert (latency[:, names.index("none")] == 0).all()
    genotype = space.sample(torch.Generator().manual_seed(0))
    ops = sum(float(latency[e, names.index(op)]) for _, e, op in space.edge_choices(genotype))
    assert model.cost(genotype)["latency"] == pytest.approx(table.fixed + ops)
    alphas = torch.zeros(latency.shape, requires_grad=True)
    model.expected({"cell": Mixing(weights=alphas.softmax(-1))}, "latency").backward()
    assert alphas.grad is not None and torch.isfinite(alphas.grad).all() and alphas.grad.abs().sum() > 0


def test_darts_space_table():
    """The DARTS space's table covers every probe's ops (normal and reduce cells), so the cost model fills it."""
    space = DartsSpace(init_channels=2, layers=3, ops="s5")  # cells: normal, reduce, reduce
    model = CostModel.measure(space, latency=LatencyTable.measure(space, timer=QUICK))
    for t in space.cell_types:
        assert (model.tables["latency"][t] > 0).all()


def test_timer_fixes_threads_and_restores_them():
    """A CPU timer runs on its thread count and leaves torch's setting as it found it; bad settings are refused."""
    before = torch.get_num_threads()
    seen = []
    probe = torch.nn.Module()
    probe.forward = lambda x: seen.append(torch.get_num_threads())
    Timer.of(threads=2, repeats=1, warmup=0).each([(probe, (1, 3, 4, 4))])
    assert seen == [2] and torch.get_num_threads() == before
    for bad in ({"threads": 0}, {"batch": 0}, {"repeats": 0}, {"device": "tpu"}):
        with pytest.raises(ValueError):
            Timer.of(**bad)


def test_command_writes_and_keeps_a_table(tmp_path, monkeypatch, capsys):
    """darts-latency writes the table to the keyed cache path, keeps it on a second call, and measures again with
    --refresh; --out names another file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["--space", "nb201", "--repeats", "1", "model.init_channels=2", "model.cells_per_stage=1"]
    main(args)
    space = NB201Space(**TINY)
    path = default_path(LatencyTable.measure(space, timer=QUICK).key)
    assert path.is_file() and str(path).startswith(str(tmp_path / "cache"))
    assert LatencyTable.load(path, space).info["repeats"] == 1
    main(args)
    assert "up to date" in capsys.readouterr().out
    main([*args, "--refresh", "--out", str(tmp_path / "t.json")])
    assert f"wrote {tmp_path / 't.json'}" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [(["--space", "toy"], "no cost model"),
                                         (["--space", "nope"], "choose one of"),
                                         (["--space", "nb201", "model.C=2"], "init_channels")])
def test_command_refuses_bad_input_in_one_line(args, words, capsys):
    """A space without a cost model, an unknown space or a bad override ends the command with one line."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    message = str(exit_.value.code)
    assert "\n" not in message and message.startswith("ValueError") and words in message


def test_benchmark_reports_the_rank_correlation(capsys):
    """The benchmark prints a row per random network, Spearman's rho and the mean absolute percentage error."""
    benchmark.main(["--space", "nb201", "--networks", "3", "--repeats", "1", *(f"model.{k}={v}" for k, v in TINY.items())])
    out = capsys.readouterr().out
    assert out.count("\n| ") >= 3 + 1 and "Spearman rho, predicted vs measured" in out and "percentage error" in out
