"""Steps of the original DARTS code (github.com/quark0/darts, ``cnn/``), run unchanged from a checkout for the memory benchmark.

Nothing of the original is copied here: ``load`` puts its ``cnn/`` folder on ``sys.path`` and imports
``model_search``, ``architect``, ``model`` and ``genotypes``. The steps are those of its ``train_search.py`` (lines
140-156: ``Architect.step`` then a weight step with gradient clipping 5) and ``train.py`` (lines 118-130: loss plus
0.4 x auxiliary loss, clipping 5), with their defaults: SGD lr 0.025, momentum 0.9, weight decay 3e-4; Adam arch
lr 3e-4, betas (0.5, 0.999), arch weight decay 1e-3. Inputs are random tensors of the images' shape.

What current PyTorch on a machine without CUDA lacks, patched only when the device is the CPU:
``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` return ``self`` (the code calls ``.cuda()`` on the alphas, the
criterion and ``Network.new()``'s copy), and ``torch.cuda.FloatTensor`` (``utils.drop_path``'s mask) makes a CPU
``torch.FloatTensor``. On CUDA nothing is patched. The deprecated ``sub(alpha, other)``/``add_(alpha, other)`` calls
of ``architect.py`` still run on PyTorch 2 (with a warning); ``nn.utils.clip_grad_norm`` of the training scripts is
called here as ``clip_grad_norm_``, as the scripts themselves are not imported.
"""
from __future__ import annotations

import sys
from argparse import Namespace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
import torch.nn as nn

GRAD_CLIP, AUXILIARY_WEIGHT, DROP_PATH_PROB = 5.0, 0.4, 0.2  # train_search.py / train.py defaults
ARCH_ARGS = Namespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3)  # train_search.py
LR = 0.025  # train_search.py and train.py: --learning_rate


def _patch_for_cpu() -> None:
    """Make the original's ``.cuda()`` calls and ``torch.cuda.FloatTensor`` work on the CPU (see the module docstring)."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.FloatTensor = torch.FloatTensor


def load(path: str, device: torch.device) -> dict[str, ModuleType]:
    """The original's modules imported from ``path`` (the repository root or its ``cnn/`` folder)."""
    root = Path(path).expanduser()
    cnn = root / "cnn" if (root / "cnn" / "model_search.py").is_file() else root
    if not (cnn / "model_search.py").is_file():
        raise ValueError(f"--original {path!r} holds no cnn/model_search.py of the DARTS repository")
    if device.type != "cuda":
        _patch_for_cpu()
    sys.path.insert(0, str(cnn))
    import architect, genotypes, model, model_search  # noqa: E401 (the original's flat module names)
    return {"architect": architect, "genotypes": genotypes, "model": model, "model_search": model_search}


def _batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random CIFAR-shaped images (B, 3, 32, 32) and labels (B,) on the device."""
    return torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)


def _sgd(model: nn.Module) -> torch.optim.SGD:
    """The scripts' weight optimizer."""
    return torch.optim.SGD(model.parameters(), LR, momentum=ARCH_ARGS.momentum, weight_decay=ARCH_ARGS.weight_decay)


def _search(model, architect, optimizer, batch: int, device: torch.device, unrolled: bool) -> None:
    """One step of train_search.py's ``train``: ``Architect.step`` on a valid batch, then a weight step."""
    (x, y), (x_valid, y_valid) = _batch(batch, device), _batch(batch, device)
    architect.step(x, y, x_valid, y_valid, LR, optimizer, unrolled=unrolled)
    optimizer.zero_grad()
    model._loss(x, y).backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()


def search_step(modules: dict[str, ModuleType], sizes: dict[str, int], order: int,
                device: torch.device) -> Callable[[], Any]:
    """One search step of the original supernet (``model_search.Network``) at sizes channels/layers/batch."""
    model = modules["model_search"].Network(sizes["channels"], 10, sizes["layers"], nn.CrossEntropyLoss()).to(device)
    architect = modules["architect"].Architect(model, ARCH_ARGS)
    return partial(_search, model, architect, _sgd(model), sizes["batch"], device, order == 2)


def _retrain(model, optimizer, batch: int, device: torch.device) -> None:
    """One step of train.py's ``train``: loss plus the auxiliary loss, clipped weight step."""
    x, y = _batch(batch, device)
    optimizer.zero_grad()
    logits, logits_aux = model(x)
    loss = nn.functional.cross_entropy(logits, y) + AUXILIARY_WEIGHT * nn.functional.cross_entropy(logits_aux, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()


def retrain_step(modules: dict[str, ModuleType], sizes: dict[str, int], device: torch.device) -> Callable[[], Any]:
    """One DARTS_V2 retraining step of the original ``model.NetworkCIFAR`` with the auxiliary head."""
    genotype = modules["genotypes"].DARTS_V2
    model = modules["model"].NetworkCIFAR(sizes["channels"], 10, sizes["layers"], True, genotype).to(device)
    model.drop_path_prob = DROP_PATH_PROB / 2  # the mean of train.py's linear ramp, as ours (benchmarks.workloads)
    model.train()
    return partial(_retrain, model, _sgd(model), sizes["batch"], device)
