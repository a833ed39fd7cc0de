"""Export a retrained network to ONNX and to a ``torch.export`` program, checked against PyTorch on real test images.

    python -m darts.deploy.export RUN_DIR [--out DIR] [--check-images 256] [--atol 1e-4] [--opset 18]

RUN_DIR is a retraining run (train_final.py), a pruning run (darts.deploy.prune) or an int8 run (darts.deploy.quantize); the
export goes to ``RUN_DIR/export`` (or ``--out``), a deployment run (``darts.deploy.steps``) holding
``model.onnx`` (checked by ``onnx.checker`` and run with onnxruntime), ``model.pt2`` (``torch.export.load``) and
``result.json``. Both take images (batch, 3, H, W), float32, normalised with the retraining's per-channel mean and
std (recorded in ``result.json``, in the ONNX metadata and inside ``model.pt2`` as ``deployment.json``), and return
logits (batch, num_classes): eval mode, without the auxiliary head or drop path. Each is run on the first
``--check-images`` test images and compared with the source network in PyTorch; an fp32 network must agree within
``--atol`` (default 1e-4). An int8 program's ONNX runs onnxruntime's int8 kernels, whose rounding differs from
PyTorch's reference int8 arithmetic: its difference and top-1 agreement are reported, and checked only against an
``--atol`` given explicitly. ``test_accuracy`` is the ONNX model's, on the whole test split.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import torch

from darts.deploy.steps import (PROGRAM, DeployStep, Source, accuracy, export_program, input_record,
                                   open_source, save_program, test_loader)
from darts.runs.directory import write_atomic
from darts.runs.tensorboard_log import TensorBoardLog

log = logging.getLogger(__name__)
ONNX = "model.onnx"
FP32_ATOL = 1e-4  # the bound on |exported - PyTorch| logits for an fp32 network


def to_onnx(program: torch.export.ExportedProgram, path: Path, record: dict[str, Any], opset: int) -> None:
    """Write ``program`` as an ONNX model (input ``images``, output ``logits``, batch dynamic) with ``record`` in its
    metadata, checked by ``onnx.checker``; atomically."""
    onnx_program = torch.onnx.export(program, input_names=["images"], output_names=["logits"], opset_version=opset,
                                     dynamo=True, verbose=False)
    model = onnx_program.model_proto
    for key, value in record.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
    onnx.checker.check_model(model, full_check=True)
    write_atomic(path, model.SerializeToString())


def onnx_session(path: Path) -> ort.InferenceSession:
    """An onnxruntime CPU session of the model at ``path``."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_logits(session: ort.InferenceSession, x: torch.Tensor) -> torch.Tensor:
    """The ONNX model's logits (B, K) of images x (B, 3, H, W)."""
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Max |difference| of two logits (B, K) and the fraction of images with the same top-1 class."""
    return {"max_abs_diff": float((reference - other).abs().max()),
            "top1_agreement": float((reference.argmax(1) == other.argmax(1)).float().mean())}


class Export(DeployStep):
    """ONNX and ``torch.export`` of a network, checked against PyTorch (see the module docstring)."""

    step = "export"
    what = "the export"

    def __init__(self, source: Source, out: str | Path | None = None, check_images: int = 256,
                 atol: float | None = None, opset: int = 18, test_images: int | None = None):
        if check_images < 2:
            raise ValueError(f"--check-images={check_images} must be >= 2")
        if atol is not None and atol <= 0:
            raise ValueError(f"--atol={atol} must be > 0")
        if source.step == "export":
            raise ValueError(f"{source.path} is an export already; export its source "
                             f"({source.config['deploy']['source']})")
        self.quantised = source.step == "int8"
        self.atol = atol if atol is not None or self.quantised else FP32_ATOL
        self.check_images, self.opset, self.test_images = check_images, opset, test_images
        super().__init__(source, "export", {"check_images": check_images, "atol": self.atol, "opset": opset,
                                            "quantised": self.quantised, "test_images": test_images}, out, "export")

    def loop(self, board: TensorBoardLog) -> None:
        """Export, check both exports against PyTorch's logits, then the ONNX network's test accuracy."""
        data = self.source.datasets()
        x = torch.cat([xb for xb, _ in data.test.loader(256, "cpu", train=False)])[:self.check_images]  # (N, 3, H, W)
        self.record = input_record(data, tuple(x.shape[1:]))
        if self.quantised:
            program = self.source.program()
            reference = program.module()
        else:
            reference = self.source.network()
            program = export_program(reference, x[:2])
        save_program(program, self.path / PROGRAM, self.record)
        to_onnx(program, self.path / ONNX, self.record, self.opset)
        session = onnx_session(self.path / ONNX)
        with torch.inference_mode():
            expected = reference(x)  # (N, K)
            checks = {"onnx": compare(expected, onnx_logits(session, x)),
                      "program": compare(expected, torch.export.load(self.path / PROGRAM).module()(x))}
        for name, check in checks.items():
            if self.atol is not None and check["max_abs_diff"] > self.atol:
                raise ValueError(f"the {name} export differs from PyTorch by {check['max_abs_diff']:.3g} > "
                                 f"--atol={self.atol} on {len(x)} test images of {self.source.path}")
        test_accuracy = accuracy(lambda xb: onnx_logits(session, xb), test_loader(data, self.test_images))
        self.outcome = {"test_accuracy": test_accuracy, "onnx": ONNX, "program": PROGRAM, "quantised": self.quantised,
                        "check_images": len(x), "atol": self.atol, "checks": checks, "opset": self.opset,
                        "size_mb": (self.path / ONNX).stat().st_size / 1e6,
                        "program_size_mb": (self.path / PROGRAM).stat().st_size / 1e6,
                        "onnxruntime": ort.__version__, "torch": torch.__version__}
        self.measured = {"test_accuracy": test_accuracy, "onnx_max_abs_diff": checks["onnx"]["max_abs_diff"],
                         "program_max_abs_diff": checks["program"]["max_abs_diff"], "size_mb": self.outcome["size_mb"]}


def export(run_dir: str | Path, out: str | Path | None = None, check_images: int = 256, atol: float | None = None,
           opset: int = 18, test_images: int | None = None) -> dict[str, Any]:
    """Export the network of ``run_dir`` (see the module docstring); returns ``result.json``'s content."""
    return Export(open_source(run_dir), out, check_images, atol, opset, test_images).run()
