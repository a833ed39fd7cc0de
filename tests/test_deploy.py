"""Deployment steps (darts.deploy.prune, darts.deploy.quantize, darts.deploy.export) on a tiny retrained network from cifar10-mini."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import darts.training as training
from conftest import ROOT, command, read_json, run_entry, tensorboard_tags
from darts.deploy.export import export
from darts.deploy.prune import channel_chains, prune_run
from darts.deploy.cli import main as deploy_main
from darts.deploy.quantize import quantize
from darts.reporting.report import collect
from darts.deploy.steps import open_source

# a tiny retraining: DARTS_V2 at 4 channels, 3 cells, one epoch of two steps (auxiliary head on: it must be dropped)
TINY = ["genotype=DARTS_V2", "model.init_channels=4", "model.layers=3", "epochs=1", "batch_size=8",
        "steps_per_epoch=2", "device=cpu"]
FAST = {"test_images": 64}  # accuracy on a fixed sample of the test split keeps each step to seconds
QUICK_INT8 = {"calibration_images": 32, "batch_sizes": (2,), "repeats": 2, **FAST}
FINETUNE = {"finetune_epochs": 2, "steps_per_epoch": 2, "device": "cpu", **FAST}


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, cifar_mini) -> Path:
    """A finished tiny retraining run."""
    run_dir = tmp_path_factory.mktemp("deploy") / "final"
    run_entry("train_final.py", run_dir, "dataset=imagefolder", f"dataset.root={cifar_mini}", *TINY)
    return run_dir


@pytest.fixture(scope="module")
def chain(retrained) -> dict[str, Path]:
    """prune (50%, unstructured) -> int8 -> export: each step's directory."""
    prune_run(retrained, 0.5, **FINETUNE)
    quantize(retrained / "prune_50", **QUICK_INT8)
    export(retrained / "prune_50" / "int8", **FAST)
    return {"prune": retrained / "prune_50", "int8": retrained / "prune_50" / "int8",
            "export": retrained / "prune_50" / "int8" / "export"}


def test_export_logits_equal_pytorch_on_real_test_images(retrained, cifar_mini):
    """ONNX (onnxruntime) and torch.export logits equal the checkpoint's eval-mode logits within 1e-4 on real test
    images; both files record the normalisation and the input size."""
    result = export(retrained, **FAST)
    out = retrained / "export"
    data = open_source(retrained).datasets()
    x = next(iter(data.test.loader(100, "cpu", train=False)))[0]  # (100, 3, 32, 32)
    with torch.no_grad():
        expected = open_source(retrained).network()(x)  # (100, 10)
        from_program = torch.export.load(out / "model.pt2").module()(x)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert (from_onnx - expected).abs().max() < 1e-4 and (from_program - expected).abs().max() < 1e-4
    metadata = {p.key: json.loads(p.value) for p in onnx.load(out / "model.onnx").metadata_props}
    assert metadata["mean"] == list(data.test.mean) and metadata["input_shape"] == ["batch", 3, 32, 32]
    assert result["input"]["std"] == list(data.test.std) and result["checks"]["onnx"]["max_abs_diff"] < 1e-4


def test_unstructured_pruning_reaches_the_requested_sparsity_exactly(chain):
    """After fine-tuning, exactly round(0.5 * N) of the N conv/linear weights are zero, and the result reports
    sparsity, params, FLOPs and accuracy before and after."""
    source = open_source(chain["prune"])
    weights = [m.weight for m in source.network().modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    result = read_json(chain["prune"] / "result.json")
    assert zeros == round(0.5 * total) and result["sparsity"] == zeros / total
    assert result["params"] < result["before"]["params"] and result["flops"] < result["before"]["flops"]
    assert {"test_accuracy", "flops"} <= result.keys() and "test_accuracy" in result["before"]
    assert "prune/train_loss" in tensorboard_tags(chain["prune"])["scalars"]


def test_structured_pruning_zeroes_whole_channels(retrained):
    """--structured zeroes round(amount * C) whole channels of every chain: filter, BN weight and bias, the
    consumer's input column; the network still runs."""
    prune_run(retrained, 0.25, structured=True, **FINETUNE)
    network = open_source(retrained / "prune_25_structured").network()
    chains = channel_chains(network)
    assert chains
    for c in chains:
        dead = c.producer.weight.flatten(1).abs().sum(1) == 0  # (C,)
        assert int(dead.sum()) == round(0.25 * len(dead))
        assert (c.consumer.weight[:, dead] == 0).all()
        assert all((layer.weight[dead] == 0).all() and (layer.bias[dead] == 0).all()
                   for layer in c.through if isinstance(layer, nn.BatchNorm2d))


def test_int8_program_is_smaller_and_reports_its_accuracy(chain):
    """The int8 run reports a size ratio (its tensors > 2x smaller than fp32's), accuracy before and after and
    latencies; its program holds int8 weights and no large fp32 ones, and a new process can load it."""
    result = read_json(chain["int8"] / "result.json")
    assert result["tensor_ratio"] > 2 and result["tensor_mb"] < result["tensor_mb_fp32"]
    assert 0 <= result["test_accuracy"] <= 100 and 0 <= result["test_accuracy_fp32"] <= 100
    assert result["latency_ms_b2"] > 0 and result["latency_ms_b2_fp32"] > 0 and result["threads"] == 1
    load = f"from darts.deploy.steps import open_source; open_source({str(chain['int8'])!r}).program()"
    subprocess.run([sys.executable, "-c", load], cwd=ROOT, check=True, timeout=300)  # a fresh process reads it
    program = torch.export.load(chain["int8"] / "model.pt2")
    int8 = [t for t in [*program.state_dict.values(), *program.constants.values()] if t.dtype == torch.int8]
    assert int8 and not any(t.dtype == torch.float32 and t.numel() > 1000 for t in program.state_dict.values())


def test_composition_prune_then_int8_then_export(chain):
    """prune -> quantise -> export: the export's torch.export program equals the int8 program; its ONNX agrees with
    it; each step records the chain; the study report lists each step as a method."""
    result = read_json(chain["export"] / "result.json")
    assert result["method"] == "train_final + prune 50% + int8 + export" and result["quantised"]
    assert result["checks"]["program"]["max_abs_diff"] == 0.0 and result["checks"]["onnx"]["top1_agreement"] >= 0.9
    methods = {run.method for run in collect([chain["prune"].parent])}
    assert {"train_final + prune 50% / DartsSpace", "train_final + prune 50% + int8 / DartsSpace",
            "train_final + prune 50% + int8 + export / DartsSpace"} <= methods


def test_prune_resumes_from_its_fine_tuning_checkpoint(retrained, monkeypatch, caplog):
    """A pruning stopped after its first fine-tuning epoch continues at the second when re-run and ends with the
    weights of an uninterrupted run; a complete run is reported complete; other settings are refused."""
    calls = []
    original = training.train_epoch  # the one training loop's epoch, which the fine-tuning runs

    def stop_at_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_at_second_epoch)
    out = retrained.parent / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prune_run(retrained, 0.5, out=out, **FINETUNE)
    monkeypatch.setattr(training, "train_epoch", original)
    with caplog.at_level("INFO", logger="darts"):
        resumed = prune_run(retrained, 0.5, out=out, **FINETUNE)
    assert "resumed" in caplog.text and "at epoch 2 of 2" in caplog.text
    whole = read_json(retrained / "prune_50" / "result.json")
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    a, b = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (out, retrained / "prune_50"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert prune_run(retrained, 0.5, out=out, **FINETUNE) == resumed
    with pytest.raises(ValueError, match="settings differ in amount"):
        prune_run(retrained, 0.6, out=out, **FINETUNE)


def test_bad_inputs_are_one_line_errors(retrained, chain, tmp_path):
    """A missing run directory, a search run, a bad amount and an int8 run given to quantize end the command with
    status 1 and one line naming the problem."""
    proc = command("darts.deploy.cli", "export", str(tmp_path / "missing"))
    expected = f"FileNotFoundError: {tmp_path / 'missing'}: no such run directory"
    assert proc.returncode == 1 and proc.stderr.strip() == expected
    search = tmp_path / "search"
    search.mkdir()
    (search / "config.yaml").write_text("run:\n  _target_: darts.runs.search.SearchRun\n")
    cases = [(["quantize", str(search)], "is not a retraining run"),
             (["prune", str(retrained), "--amount", "1.5"], "--amount=1.5 must lie in"),
             (["quantize", str(chain["int8"])], "is an int8 run")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_:
            deploy_main(argv)
        assert message in str(exit_.value.code) and "\n" not in str(exit_.value.code)
