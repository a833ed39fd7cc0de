"""Comparing runs: cell diagrams (headless, every published genotype and every space), what TensorBoard holds per run
(diagrams per epoch, HParams data, the custom-scalars layout, a colour scale centred on 1/K), sweep directories named
by their overrides, and the drawing command."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, command, run_entry
import darts.reporting.draw as draw
from darts.diagrams import draw_genotype, save, to_image
from search_spaces.darts import GENOTYPES, DartsSpace
from search_spaces.nb201 import NB201Space
from search_spaces.toy import ToySpace

SPACES = {"darts": DartsSpace(), "nb201": NB201Space(), "toy": ToySpace()}


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_every_published_genotype_draws_headless(name):
    """Each published DARTS-space genotype renders both cells (labelled edges, concat into c_k) to an RGB image."""
    graphs = DartsSpace().cell_graphs(GENOTYPES[name])
    assert set(graphs) == {"normal", "reduce"}
    assert all(len(g.edges) == len(getattr(GENOTYPES[name], t)) for t, g in graphs.items())
    image = to_image(draw_genotype(graphs, name))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 0


@pytest.mark.parametrize("space", sorted(SPACES))
def test_sampled_genotypes_of_every_space_draw_to_png_pdf_and_svg(space, tmp_path):
    """A sampled genotype of each space draws to PNG, PDF and SVG; NB201 leaves `none` edges out; a bad suffix is a
    clear error."""
    space_obj = SPACES[space]
    genotype = space_obj.sample(torch.Generator().manual_seed(0))
    figure = draw_genotype(space_obj.cell_graphs(genotype), space_obj.to_text(genotype))
    for suffix in ("png", "pdf", "svg"):
        assert save(figure, tmp_path / f"cell.{suffix}").stat().st_size > 0
    with pytest.raises(ValueError, match=r"\.png, \.pdf or \.svg"):
        save(figure, tmp_path / "cell.jpg")
    all_none = NB201Space().parse("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert [op for *_, op in NB201Space().cell_graphs(all_none)["cell"].edges] == ["skip_connect"]


def test_the_draw_command_takes_names_texts_and_run_directories(tmp_path):
    """darts-draw draws a published name, an NB201 string (--space nb201) and a run directory's genotype
    (its space read from its config); a bad name is one line and status 1."""
    draw.main(["DARTS_V2", "--out", str(tmp_path / "v2.png")])
    assert (tmp_path / "v2.png").is_file()
    nb201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    draw.main([nb201, "--space", "nb201", "--out", str(tmp_path / "nb.svg")])
    assert (tmp_path / "nb.svg").is_file()
    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=toy", "dataset=fake", "dataset.num_train=16", "dataset.num_test=8",
              "dataset.image_size=8", "batch_size=4", "epochs=1")
    draw.main([str(run), "--out", str(tmp_path / "run.png")])
    assert (tmp_path / "run.png").is_file()
    proc = command("darts.reporting.draw", "DARTS_V9")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "DARTS_V9" in proc.stderr


def test_a_search_logs_diagrams_hparams_and_the_op_weight_layout(tmp_path):
    """A search's events hold the cell diagram per epoch, each edge's op weights as scalars grouped per edge by the
    custom-scalars layout, the HParams plugin's record (settings and final metrics: benchmark accuracies included),
    and the result scalars."""
    csv = ROOT.parent / "shared" / "data" / "nb201" / "nb201_accuracies.csv"
    if not csv.is_file():
        pytest.skip(f"the NB201 table is not at {csv}")
    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=nb201", "model.init_channels=4", "model.cells_per_stage=1",
              "dataset=fake", "dataset.num_train=32", "dataset.num_test=8", "dataset.image_size=8", "batch_size=4",
              "epochs=2", "strategy=gdas", f"benchmark.path={csv}")
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Images("arch/diagram_cell")] == [0, 1]
    assert {f"arch/weights_cell/edge00/{op}" for op in NB201Space.primitives} <= set(tags["scalars"])
    assert {"result/valid_acc", "result/search_time", "result/benchmark/cifar10_test_200ep"} <= set(tags["scalars"])
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    start = hparams["_hparams_/session_start_info"].decode(errors="ignore")
    assert "GDAS" in start and "NB201Space" in start and "tau_max" in start
    layout = acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    assert b"op weights, cell cell" in layout and b"arch/weights_cell/edge05/.*" in layout


def test_sweep_runs_are_named_by_their_swept_keys(tmp_path):
    """A multirun's run directories are named by what differs between its jobs (the swept keys, not job numbers nor
    the overrides all jobs share), so TensorBoard's run list says which strategy and seed each is, and the HParams
    table leads with those keys."""
    sweep = tmp_path / "sweep"
    proc = command("train_search.py", "-m", "search_space=toy", "dataset=fake", "dataset.num_train=16",
                   "dataset.num_test=8", "dataset.image_size=8", "batch_size=4", "epochs=1", "strategy=darts,gdas",
                   "seed=0,1", "progress=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in sweep.iterdir() if (p / "result.json").is_file())
    assert names == [f"seed={s},strategy={m}" for s in (0, 1) for m in ("darts", "gdas")]
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep)).Runs()
    assert sorted(runs) == names  # TensorBoard's run names
    acc = EventAccumulator(str(sweep / names[0]), size_guidance={"tensors": 0})
    acc.Reload()
    columns = acc.PluginTagToContent("hparams")["_hparams_/experiment"].decode(errors="ignore")
    assert columns.index("seed") < columns.index("batch_size") > columns.index("strategy")
