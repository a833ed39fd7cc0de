"""Post-training static int8 quantisation of a retrained network, with PyTorch's current flow: PyTorch 2 Export
quantisation (pt2e) in torchao (``torch.ao.quantization``'s eager and FX modes are deprecated since torch 2.10).

    python -m darts.deploy.quantize RUN_DIR [--out DIR] [--calibration-images 1024] [--batch-sizes 1 64] [--repeats 50]
                             [--threads 1]

RUN_DIR is a retraining run (train_final.py) or a pruning run (darts.deploy.prune). The network (eval mode, logits only)
is captured by ``torch.export``, annotated by ``X86InductorQuantizer``'s default configuration (int8 weights,
symmetric per output channel; uint8 activations, affine per tensor; static), calibrated on
``--calibration-images`` training images (seeded sample, no augmentation) and converted (``convert_pt2e``). The
int8 program is saved as ``model.pt2`` in ``RUN_DIR/int8`` (or ``--out``) for ``darts.deploy.export``; ``result.json``
reports before (fp32) and after (int8): the test accuracy on the whole test split, the size (serialised
``torch.export`` program, and its tensors alone), and the CPU latency: median over ``--repeats`` forward passes per
batch size on ``--threads`` threads (``torch.set_num_threads``). The fp32 latency is PyTorch's eager network; the
int8 latency runs x86 int8 kernels (oneDNN), lowered by torchao's ``lower_pt2e_quantized_to_x86`` for each batch
size; the int8 accuracy is the converted program's, whose reference int8 arithmetic that lowering reproduces.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchao
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (X86InductorQuantizer,
                                                                        get_default_x86_inductor_quantization_config)

from darts.cost.counting import count_parameters
from darts.runs.tensorboard_log import TensorBoardLog
from darts.deploy.steps import (PROGRAM, DeployStep, Source, accuracy, export_program, input_record,
                                   latency_ms, open_source, program_bytes, save_program, test_loader)

log = logging.getLogger(__name__)
QUANTIZER = "X86InductorQuantizer, default config: int8 per-channel symmetric weights, uint8 per-tensor activations"


class ChannelAffine(nn.Module):
    """An eval-mode BatchNorm2d as the per-channel affine map it computes: x * scale + shift."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.register_buffer("scale", scale.detach().view(1, -1, 1, 1))  # (1, C, 1, 1)
        self.register_buffer("shift", shift.detach().view(1, -1, 1, 1))  # (1, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        return x * self.scale + self.shift


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d of an eval-mode network in place: into the convolution it follows in an nn.Sequential
    (``fuse_conv_bn_eval``), else (after a concatenation or a pool) into a ``ChannelAffine``. The same function;
    done before pt2e because ``convert_pt2e`` traces some hundred conv-BN patterns (a minute) whenever a BatchNorm
    survives ``prepare_pt2e``'s conv-BN fusion, as FactorizedReduce's (after a concatenation) does."""
    for child in module.children():
        fold_batch_norms(child)
    children = list(module.named_children())
    for (prev_name, prev), (name, child) in zip([(None, None), *children], children):
        if not isinstance(child, nn.BatchNorm2d):
            continue
        if isinstance(module, nn.Sequential) and isinstance(prev, nn.Conv2d):
            setattr(module, prev_name, fuse_conv_bn_eval(prev, child))
            setattr(module, name, nn.Identity())
        else:
            setattr(module, name, ChannelAffine(child))
    return module


def drop_unused(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the parameters and buffers no node reads (the fp32 weights ``convert_pt2e`` replaced by int8 ones),
    so that the exported program does not carry them."""
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner), attr)
    return graph_module


@torch.no_grad()
def quantise(network: nn.Module, calibration: Any, example: torch.Tensor) -> torch.fx.GraphModule:
    """The int8 network (pt2e's quantize/dequantize form) of an eval-mode fp32 ``network``, calibrated on the
    batches (x, y) of ``calibration``; ``example`` (B >= 2, 3, H, W)."""
    captured = export_program(fold_batch_norms(network), example).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(captured, quantizer)
    for x, _ in calibration:
        prepared(x)
    return drop_unused(convert_pt2e(prepared))


class Quantisation(DeployStep):
    """Post-training static int8 quantisation of a retrained (or pruned) network (see the module docstring)."""

    step = "int8"
    what = "the quantisation"

    def __init__(self, source: Source, out: str | Path | None = None, calibration_images: int = 1024,
                 batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 50, threads: int = 1,
                 test_images: int | None = None):
        for name, value in (("calibration-images", calibration_images), ("repeats", repeats), ("threads", threads),
                            *(("batch-sizes", b) for b in batch_sizes)):
            if value < 1:
                raise ValueError(f"--{name}={value} must be >= 1")
        if source.step not in ("final", "prune"):
            raise ValueError(f"{source.path} is an {source.step} run: quantise a retraining or pruning run")
        settings = {"calibration_images": calibration_images, "batch_sizes": list(batch_sizes), "repeats": repeats,
                    "threads": threads, "quantizer": QUANTIZER, "test_images": test_images}
        super().__init__(source, "int8", settings, out, "int8")
        self.calibration_images, self.batch_sizes, self.repeats = calibration_images, batch_sizes, repeats
        self.threads, self.test_images = threads, test_images

    def loop(self, board: TensorBoardLog) -> None:
        """Calibrate and convert (kept as model.pt2 for a re-run), then measure size, latency and accuracy."""
        source, data, threads_before = self.source, self.source.datasets(), torch.get_num_threads()
        test = test_loader(data, self.test_images)
        example = next(iter(test))[0][:2]  # (2, 3, H, W)
        self.record = input_record(data, tuple(example.shape[1:]))
        network = source.network()
        generator = torch.Generator().manual_seed(int(source.config.get("seed") or 0))
        sample = torch.randperm(len(data.train), generator=generator)[:self.calibration_images]
        if not (self.path / PROGRAM).is_file():  # a run stopped while measuring keeps its program
            calibration = data.train.loader(64, "cpu", train=False, indices=sample)
            log.info("calibrating on %d training images", len(sample))
            program = export_program(quantise(source.network(), calibration, example), example)
            save_program(program, self.path / PROGRAM, self.record)
        program = torch.export.load(self.path / PROGRAM)
        int8 = program.module()
        fp32_bytes, int8_bytes = program_bytes(export_program(network, example)), program_bytes(program)
        try:
            torch.set_num_threads(self.threads)
            latency = {}
            for b in self.batch_sizes:
                x = torch.cat([example] * (b // 2 + 1))[:b]  # (b, 3, H, W)
                latency[f"latency_ms_b{b}_fp32"] = latency_ms(network, x, self.repeats)
                latency[f"latency_ms_b{b}"] = latency_ms(lower_pt2e_quantized_to_x86(int8, (x,)), x, self.repeats)
        finally:
            torch.set_num_threads(threads_before)
        with torch.no_grad():
            fp32_acc, int8_acc = accuracy(network, test), accuracy(int8, test)
        self.outcome = {"test_accuracy": int8_acc, "test_accuracy_fp32": fp32_acc,
                        "params": count_parameters(network) / 1e6, "size_mb": int8_bytes[0] / 1e6,
                        "size_mb_fp32": fp32_bytes[0] / 1e6, "size_ratio": fp32_bytes[0] / int8_bytes[0],
                        "tensor_mb": int8_bytes[1] / 1e6, "tensor_mb_fp32": fp32_bytes[1] / 1e6,
                        "tensor_ratio": fp32_bytes[1] / int8_bytes[1], **latency, "calibration_images": len(sample),
                        "threads": self.threads, "repeats": self.repeats, "quantizer": QUANTIZER,
                        "torch": torch.__version__, "torchao": torchao.__version__}
        self.measured = {**{k: self.outcome[k] for k in ("test_accuracy", "test_accuracy_fp32", "size_ratio",
                                                          "tensor_ratio")}, **latency}


def quantize(run_dir: str | Path, out: str | Path | None = None, calibration_images: int = 1024,
             batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 50, threads: int = 1,
             test_images: int | None = None) -> dict[str, Any]:
    """Quantise the network of ``run_dir`` (see the module docstring); returns ``result.json``'s content."""
    return Quantisation(open_source(run_dir), out, calibration_images, batch_sizes, repeats, threads,
                        test_images).run()
