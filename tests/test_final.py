"""Retraining (darts/runs/final.py, train_final.py): genotype sources, the recipes, the loss, FLOPs, resume, end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from darts.app import config as cli
import darts.training as training
from darts.context import Context
from conftest import ROOT, command, read_json, run_entry
from darts.cost.counting import count_network
from darts.runs.final import final_loss
from darts.runs.network_spec import holdout_split
from darts.runs.reader import resolve_genotype as resolve
from search_spaces.darts import GENOTYPES, DartsSpace
from search_spaces.nb201 import NB201Space

V2 = GENOTYPES["DARTS_V2"]
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# a tiny, fast retraining on the real CIFAR-10 subset: 3 epochs of 1 step, 10% held out for validation
TINY = ["genotype=DARTS_V2", "model.init_channels=4", "model.layers=3", "epochs=3", "batch_size=8",
        "steps_per_epoch=1", "valid_portion=0.1", "device=cpu", "progress=false"]


def resolve_genotype(source):
    """A genotype of the DARTS space from any source form."""
    return resolve(source, DartsSpace())


def tiny_overrides(cifar_mini: Path) -> list[str]:
    """TINY on cifar10-mini through dataset=imagefolder (the CIFAR recipe)."""
    return ["dataset=imagefolder", f"dataset.root={cifar_mini}", *TINY]


def load_entry_point():
    """The retraining entry point's module (``darts.app.retrain``)."""
    import darts.app.retrain

    return darts.app.retrain


def compose_final(overrides: list[str]):
    """conf/final.yaml composed with overrides, as train_final.py sees it."""
    with initialize_config_dir(config_dir=str(ROOT / "darts" / "conf"), version_base="1.3"):
        return compose(config_name="final", overrides=overrides)


def test_every_genotype_source_form_resolves_to_the_same_genotype(tmp_path):
    """A name, a text, .txt (text or name), .json (to_json or a search result.json) and a run directory agree."""
    text = repr(V2)
    (tmp_path / "text.txt").write_text(text + "\n")
    (tmp_path / "name.txt").write_text("DARTS_V2\n")
    (tmp_path / "genotype.json").write_text(json.dumps(V2.to_json()))
    (tmp_path / "result.json").write_text(json.dumps({"genotype": text, "epochs": 50}))
    json_only = tmp_path / "json_run"
    json_only.mkdir()
    (json_only / "genotype.json").write_text(json.dumps(V2.to_json()))
    sources = ["DARTS_V2", f"  {text}\n", tmp_path / "text.txt", tmp_path / "name.txt", tmp_path / "genotype.json",
               str(tmp_path / "result.json"), tmp_path, json_only]
    assert all(resolve_genotype(source) == V2 for source in sources)


def test_a_search_run_directory_gives_its_final_genotype(tmp_path):
    """A search run directory resolves to its genotype.txt, keeping the text's range(2, 6) concat."""
    gdas = GENOTYPES["GDAS_V1"]
    (tmp_path / "genotype.txt").write_text(repr(gdas) + "\n")
    (tmp_path / "genotype.json").write_text(json.dumps(gdas.to_json()))
    assert repr(resolve_genotype(tmp_path)) == repr(gdas)


def test_hydra_quoted_genotype_text_reaches_the_resolver_intact():
    """The README's CLI form genotype="Genotype(...)" (quoted for Hydra) parses to the same text."""
    value = OverridesParser.create().parse_overrides([f'genotype="{V2!r}"'])[0].value()
    assert value == repr(V2) and resolve_genotype(value) == V2


def test_unknown_name_error_lists_the_published_names():
    """An unknown name raises one ValueError naming it and every published genotype."""
    with pytest.raises(ValueError, match="DARTS_V3") as err:
        resolve_genotype("DARTS_V3")
    assert all(name in str(err.value) for name in GENOTYPES)


@pytest.mark.parametrize("source, match", [
    ("Genotype(normal=[('conv_9x9', 0)])", "not a genotype of DartsSpace.*is missing normal_concat"),
    ("outputs/no/such/run.json", "no such file or directory"),
    ("__import__('os').system('true')", "not a genotype of DartsSpace"),
])
def test_bad_genotype_sources_raise_value_error(source, match):
    """Bad text, a missing path and code all give a clear ValueError (text is never evaluated)."""
    with pytest.raises(ValueError, match=match):
        resolve_genotype(source)


def test_sources_of_another_space_are_refused(tmp_path):
    """An NB201 run directory, its genotype.json, its result.json or its text, given to the DARTS space, is refused
    with an error naming the space and the search_space setting; the NB201 space reads every one of them."""
    (tmp_path / "genotype.txt").write_text(NB201_ARCH + "\n")
    (tmp_path / "genotype.json").write_text(json.dumps({"arch": NB201_ARCH}))
    (tmp_path / "result.json").write_text(json.dumps({"genotype": NB201_ARCH}))
    sources = (tmp_path, tmp_path / "genotype.json", tmp_path / "result.json", NB201_ARCH)
    for source in sources:
        with pytest.raises(ValueError, match="DartsSpace.*search_space="):
            resolve_genotype(source)
    assert {str(resolve(source, NB201Space())) for source in sources} == {NB201_ARCH}


def test_unfinished_search_run_is_refused(tmp_path):
    """A run directory without a final genotype says so."""
    (tmp_path / "genotypes.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="no genotype.json or genotype.txt"):
        resolve_genotype(tmp_path)


def test_holdout_split_is_a_seeded_partition():
    """valid_portion holds out floor(p*N) indices, disjoint from the rest and reproducible; 0 holds out none."""
    train, valid = holdout_split(100, 0.25, seed=3)
    assert len(valid) == 25 and sorted(torch.cat([train, valid]).tolist()) == list(range(100))
    assert torch.equal(valid, holdout_split(100, 0.25, seed=3)[1])
    assert holdout_split(100, 0.0, seed=3) == (None, None)
    with pytest.raises(ValueError, match="valid_portion"):
        holdout_split(100, 1.0, seed=3)


def test_final_loss_adds_weighted_auxiliary_and_label_smoothing():
    """Loss = CE + w * CE_aux, with DARTS's CrossEntropyLabelSmooth formula when smoothing > 0."""
    g = torch.Generator().manual_seed(0)
    logits, aux = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 3, 1, 1, 2])

    def smooth_ce(z: torch.Tensor, eps: float) -> torch.Tensor:  # train_imagenet.py CrossEntropyLabelSmooth
        target = (1 - eps) * nn.functional.one_hot(y, 4) + eps / 4
        return (-target * z.log_softmax(1)).mean(0).sum()

    loss, out = final_loss((logits, aux), y, auxiliary_weight=0.4, label_smoothing=0.1)
    assert out is logits
    assert torch.allclose(loss, smooth_ce(logits, 0.1) + 0.4 * smooth_ce(aux, 0.1))
    assert torch.allclose(final_loss((logits, None), y, 0.4)[0], smooth_ce(logits, 0.0))


def test_count_network_counts_one_eval_forward():
    """FLOPs of conv + linear at batch 1 are their multiply-accumulates, the linear bias included (NAS-Bench-201's
    convention), and the training mode is restored."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model.train()
    macs = 4 * 6 * 6 * 3 * 3 * 3 + 4 * 6 * 6 * 10 + 10
    assert count_network(model, torch.randn(1, 3, 8, 8)).flops == macs
    assert model.training


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagefolder", "fake", "imagenet"])
def test_dataset_selects_its_recipe(dataset):
    """dataset=imagenet composes the DARTS ImageNet recipe; every other dataset the CIFAR-10 one."""
    cfg = compose_final([f"dataset={dataset}"])
    imagenet = dataset == "imagenet"
    assert cfg.network._target_.endswith("NetworkImageNet" if imagenet else "NetworkCIFAR")
    expected = ((48, 14, 250, 128, 0.1, 3e-5, 0.1, 0.0, 0) if imagenet else
                (36, 20, 600, 96, 0.025, 3e-4, 0.0, 0.2, 16))
    assert (cfg.model.init_channels, cfg.model.layers, cfg.epochs, cfg.batch_size, cfg.optimizer.lr,
            cfg.optimizer.weight_decay, cfg.label_smoothing, cfg.drop_path_prob, cfg.cutout) == expected
    assert cfg.auxiliary_weight == 0.4 and cfg.optimizer.grad_clip == 5 and cfg.optimizer.momentum == 0.9
    assert cfg.scheduler._target_.endswith("Exponential" if imagenet else "Cosine")
    assert not cfg.optimizer.nesterov


@pytest.fixture(scope="module")
def finished_run(cifar_mini, tmp_path_factory) -> Path:
    """One end-to-end train_final.py run (3 tiny epochs on cifar10-mini)."""
    run_dir = tmp_path_factory.mktemp("final") / "run"
    run_entry("train_final.py", run_dir, *tiny_overrides(cifar_mini))
    return run_dir


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per scalar tag over all event files of a run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_end_to_end_run_writes_result_checkpoints_and_scalars(finished_run):
    """train_final.py writes result.json, genotype files, last and best checkpoints, and per-epoch scalars."""
    result = read_json(finished_run / "result.json")
    assert {"test_accuracy", "params", "cost", "genotype", "epochs", "best_valid_accuracy"} <= set(result)
    assert result["epochs"] == 3 and result["genotype"] == repr(V2) and 0 <= result["test_accuracy"] <= 100
    assert 0 < result["params"] == result["cost"]["params"] < 0.1 and result["cost"]["flops"] > 0
    assert resolve_genotype(finished_run) == V2  # a final run directory feeds back in like a search run
    for name in ("checkpoint.pt", "best.pt", "config.yaml"):
        assert (finished_run / name).is_file()
    tags = scalars(finished_run)
    for tag in ("train_loss", "train_acc", "valid_acc", "test_acc", "test_loss", "lr", "drop_path_prob"):
        assert [step for step, _ in tags[f"final/{tag}"]] == [0, 1, 2]
    # DARTS cnn/train.py: cosine from 0.025 towards 0 over 3 epochs; drop path 0.2 * epoch / epochs
    cosine = [0.025 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    assert [v for _, v in tags["final/lr"]] == pytest.approx(cosine)
    assert [v for _, v in tags["final/drop_path_prob"]] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3])


def test_resume_continues_from_the_saved_epoch(finished_run, cifar_mini, tmp_path, monkeypatch):
    """A run stopped after epoch 2 of 3 resumes (resume=<dir>) at epoch 3 and ends exactly as the uninterrupted
    run (epoch 2 already drew drop-path masks, so the RNG state must be restored too)."""
    train_final = load_entry_point()
    cfg = compose_final(tiny_overrides(cifar_mini))
    for name in ("config.yaml", "composed.yaml"):
        (tmp_path / name).write_text(Path(finished_run / name).read_text())
    calls = []
    real_train_epoch = training.train_epoch

    def stop_at_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_at_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_final.build_run(cfg, tmp_path).run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "result.json").exists()
    # no hydra.run.dir: the run directory comes from resume= through the final_run_dir resolver
    command("train_final.py", f"resume={tmp_path}", "device=cpu", check=True)
    assert "resumed" in (tmp_path / "train_final.log").read_text() and "at epoch 3 of 3" in (
        tmp_path / "train_final.log").read_text()
    resumed, reference = read_json(tmp_path / "result.json"), read_json(finished_run / "result.json")
    assert resumed["epochs"] == 3
    assert [step for step, _ in scalars(tmp_path)["final/test_acc"]] == [0, 1, 2]
    for key in ("test_loss", "test_accuracy", "train_loss", "best_valid_accuracy"):
        # 1e-4: the two runs use different thread counts, and channels_last convs reduce in thread-dependent order
        assert math.isclose(resumed[key], reference[key], rel_tol=1e-4), key


def test_resuming_accepts_only_what_keeps_the_run():
    """On resume a longer schedule and runtime keys may change; the model, data, seed or recipe may not."""
    saved = OmegaConf.create({"epochs": 3, "device": "auto", "resume": None, "seed": 0, "model": {"layers": 3}})
    cfg = cli.resumed_config(saved, ["resume=/some/run", "device=cpu", "epochs=10"])
    assert (cfg.epochs, cfg.device, cfg.resume) == (10, "cpu", "/some/run")
    for override in ("seed=1", "model.layers=5", "optimizer.lr=0.1", "dataset=fake"):
        with pytest.raises(ValueError, match=f"cannot change '{override.split('=')[0]}' when resuming"):
            cli.resumed_config(saved, ["resume=true", override])


ACCEPTANCE_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def reference_tiny_network_params(arch: str, C: int = 16, N: int = 5, num_classes: int = 10) -> int:
    """TinyNetwork's parameter count by hand from AutoDL-Projects tiny_network.py / cell_operations.py: a 3x3 conv
    stem + BN; per cell, nor_conv_kxk = ReLU-Conv(k*k*c*c, no bias: affine BN)-BN(2c); two ResNetBasicblocks
    (conv_a 3x3 stride 2 + BN, conv_b 3x3 + BN, avg-pool + 1x1 conv shortcut); BN-ReLU; a linear classifier."""
    ops = [item.split("~")[0] for node in arch.strip("|").split("|+|") for item in node.split("|")]
    per_op = {"nor_conv_3x3": lambda c: 9 * c * c + 2 * c, "nor_conv_1x1": lambda c: c * c + 2 * c}
    cells = sum(N * sum(per_op.get(op, lambda c: 0)(c) for op in ops) for c in (C, 2 * C, 4 * C))
    blocks = sum(9 * c * 2 * c + 2 * 2 * c + 9 * 4 * c * c + 2 * 2 * c + c * 2 * c for c in (C, 2 * C))
    return 27 * C + 2 * C + cells + blocks + 2 * 4 * C + 4 * C * num_classes + num_classes


def test_reference_count_of_the_extremes():
    """The hand count gives the benchmark's published extremes (all-skip 73,306; all nor_conv_3x3 1,531,546)."""
    skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert reference_tiny_network_params(skip) == 73_306
    assert reference_tiny_network_params(skip.replace("skip_connect", "nor_conv_3x3")) == 1_531_546


def test_nb201_retraining_end_to_end(cifar_mini, tmp_path):
    """train_final.py search_space=nb201 genotype=<arch> retrains the NB201 network on real images with the NB201
    recipe (Nesterov SGD, lr 0.1 annealed per step) and writes result.json with its test accuracy and its parameter
    count, which equals the reference TinyNetwork's at C=16, N=5."""
    run = tmp_path / "run"
    run_entry("train_final.py", run, "search_space=nb201", f"genotype='{ACCEPTANCE_ARCH}'", "dataset=imagefolder",
              f"dataset.root={cifar_mini}", "epochs=2", "steps_per_epoch=2", "batch_size=16", "device=cpu",
              "memory.checkpoint=cells")  # the cells recomputed in backward (tests/test_memory.py: same numbers)
    result = read_json(run / "result.json")
    assert 0 <= result["test_accuracy"] <= 100 and result["genotype"] == ACCEPTANCE_ARCH
    assert result["params"] * 1e6 == pytest.approx(reference_tiny_network_params(ACCEPTANCE_ARCH), abs=0.5)
    assert result["network"]["network"] == "search_spaces.nb201.network.TinyNetwork"
    assert (result["network"]["C"], result["network"]["N"]) == (16, 5)
    config = OmegaConf.load(run / "config.yaml")
    assert config.optimizer.nesterov and config.optimizer.lr == 0.1 and config.scheduler.per_step
    assert resolve(run, NB201Space()) == NB201Space().parse(ACCEPTANCE_ARCH)  # its directory feeds back in


def test_closed_form_schedules_equal_torch_schedulers():
    """Cosine (per epoch and per step) and Exponential give torch's CosineAnnealingLR and StepLR(1, gamma) rates."""
    from darts.schedules import Cosine, Exponential

    def torch_rates(make, n: int) -> list[float]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched, rates = make(opt), []
        for _ in range(n):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return rates

    epochs, steps = 4, 5
    per_step = [Cosine(0.001, per_step=True)(0.1, e + s / steps, epochs) for e in range(epochs) for s in range(steps)]
    assert per_step == pytest.approx(torch_rates(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs * steps, eta_min=0.001), epochs * steps))
    assert [Cosine()(0.1, e, epochs) for e in range(epochs)] == pytest.approx(
        torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs), epochs))
    assert [Exponential(0.97)(0.1, e, epochs) for e in range(epochs)] == pytest.approx(
        torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.97), epochs))


def test_train_epoch_sets_the_per_step_rate_before_each_step():
    """train_epoch(lr_at_step=...) sets the rate of every parameter group before each step."""
    from darts.training import train_epoch

    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []

    def loss_fn(out, y):
        seen.append(opt.param_groups[0]["lr"])
        return nn.functional.cross_entropy(out, y), out

    batches = [(torch.randn(2, 4), torch.tensor([0, 1]))] * 3
    train_epoch(model, batches, opt, 3, Context(), loss_fn, lr_at_step=lambda s: 0.1 * s)
    assert seen == pytest.approx([0.0, 0.1, 0.2])
