"""Retraining a cell from scratch in a full-size network, as DARTS evaluates its cells (paper A.2).

``resolve_genotype`` turns what a user gives (a published name, a genotype text, a ``.json``/``.txt``
file or a search run directory) into a ``Genotype``. ``FinalRun`` trains the network of a
``NetworkSpec`` and evaluates it on the test split every epoch (DARTS cnn/train.py); its run directory
holds ``checkpoint.pt`` (last, atomic), ``best.pt`` (best validation accuracy, when a validation split
is held out), ``genotype.txt``/``genotype.json``, ``result.json`` and the TensorBoard events.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from darts import checkpoint
from darts.genotype import Genotype, parse_genotype
from darts.logging import Logger
from darts.network import count_parameters
from darts.runtime import amp_dtype, check_precision, use_channels_last
from darts.search import write_json
from darts.trainer import evaluate, train_epoch
from search_spaces.darts_genotypes import GENOTYPES

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
_FORMS = "a published name, a Genotype(...) text, a .json/.txt file or a search run directory"


def _nb201_error(where: str) -> ValueError:
    """NB201 cells are scored with the benchmark table, not retrained here."""
    return ValueError(f"{where} holds a NAS-Bench-201 cell: train_final.py retrains DARTS-space cells only "
                      f"(NB201 architectures are evaluated with the benchmark)")


def _from_text(text: str, where: str = "") -> Genotype:
    """A published name or a Genotype(...) text (never evaluated); ``where`` names the file it came from."""
    where = f" in {where}" if where else ""
    text = text.strip()
    if text in GENOTYPES:
        return GENOTYPES[text]
    if text.startswith("|"):  # the NB201 benchmark string, e.g. |nor_conv_3x3~0|+|...|
        raise _nb201_error(f"genotype {text[:40]!r}{where}")
    if text.startswith("Genotype"):
        try:
            return parse_genotype(text)
        except ValueError as err:
            raise ValueError(f"bad genotype text{where}: {err}") from None
    raise ValueError(f"unknown genotype {text!r}{where}; give {_FORMS}; published names: {', '.join(GENOTYPES)}")


def _from_json(path: Path) -> Genotype:
    """A ``Genotype.to_json()`` file, or a search ``result.json`` (its ``genotype`` text)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and "arch" in data:  # NB201Space.to_json
        raise _nb201_error(str(path))
    if isinstance(data, dict) and isinstance(data.get("genotype"), str):
        return _from_text(data["genotype"], str(path))
    try:
        return Genotype.from_json(data)
    except ValueError as err:
        raise ValueError(f"bad genotype JSON in {path}: {err}") from None


def resolve_genotype(source: str | Path) -> Genotype:
    """The DARTS genotype named by ``source``: a published name (``GENOTYPES``), a Genotype(...) text,
    a ``.json`` file (``Genotype.to_json`` form or a search ``result.json``), a ``.txt`` file (a text or a
    name), or a search run directory (its final ``genotype.txt``, else ``genotype.json``)."""
    text = str(source).strip()
    if text in GENOTYPES or text.startswith(("Genotype", "|")):
        return _from_text(text)
    path = Path(text).expanduser()
    if path.is_dir():
        for name in ("genotype.txt", "genotype.json"):  # the text keeps the concat's form, e.g. range(2, 6)
            if (path / name).is_file():
                return resolve_genotype(path / name)
        raise ValueError(f"run directory {path} has no genotype.json or genotype.txt (has its search finished? "
                         f"genotypes.jsonl holds the genotype of each finished epoch)")
    if path.is_file():
        if path.suffix == ".json":
            return _from_json(path)
        if path.suffix == ".txt":
            return _from_text(path.read_text(), str(path))
        raise ValueError(f"genotype file {path} must end in .json or .txt")
    if "/" in text or path.suffix in (".json", ".txt"):
        raise ValueError(f"genotype={text!r}: no such file or directory; give {_FORMS}")
    return _from_text(text)


def holdout_split(num: int, valid_portion: float, seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(train, valid) indices with ``valid_portion`` of ``range(num)`` held out, seeded; (None, None) for 0."""
    if not 0.0 <= valid_portion < 1.0:
        raise ValueError(f"valid_portion={valid_portion} must lie in [0, 1) (0 trains on the whole training set)")
    if valid_portion == 0.0:
        return None, None
    n_valid = math.floor(valid_portion * num)
    if n_valid == 0:
        raise ValueError(f"valid_portion={valid_portion} of {num} training images holds out none")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))  # (num,)
    return perm[n_valid:], perm[:n_valid]


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass of ``x`` (1, 3, H, W), by ``torch.utils.flop_counter``
    (convolutions and matrix products; a multiply-add counts 2)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class NetworkSpec:
    """What builds the retrained network: ``network(init_channels, num_classes, layers, auxiliary, genotype)``
    (``darts.network.NetworkCIFAR`` or ``NetworkImageNet``); saved in checkpoints."""

    network: type[nn.Module]
    genotype: Genotype
    init_channels: int
    layers: int
    num_classes: int
    auxiliary: bool

    def build(self) -> nn.Module:
        """A freshly initialised network."""
        return self.network(self.init_channels, self.num_classes, self.layers, self.auxiliary, self.genotype)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and result.json)."""
        return {"network": f"{self.network.__module__}.{self.network.__qualname__}", "genotype": repr(self.genotype),
                "init_channels": self.init_channels, "layers": self.layers, "num_classes": self.num_classes,
                "auxiliary": self.auxiliary}


@dataclass(frozen=True)
class FinalSettings:
    """The retraining recipe; defaults are DARTS's CIFAR-10 evaluation (paper A.2.1, cnn/train.py)."""

    epochs: int = 600
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0
    steps_per_epoch: int | None = None
    progress: bool = True
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU (darts.runtime.amp_dtype)
    channels_last: bool | str = "auto"  # auto = on CPU, off on CUDA (darts.runtime.use_channels_last)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be >= 1")
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ValueError(f"drop_path_prob={self.drop_path_prob} must lie in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must lie in [0, 1)")
        if self.auxiliary_weight < 0:
            raise ValueError(f"auxiliary_weight={self.auxiliary_weight} must be >= 0 (0 = no auxiliary head)")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch={self.steps_per_epoch} must be >= 1 or null (a full pass)")


def final_loss(output: tuple[torch.Tensor, torch.Tensor | None], y: torch.Tensor, auxiliary_weight: float,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits): CE(logits) + auxiliary_weight * CE(logits_aux) (DARTS cnn/train.py), both label-smoothed
    as cnn/train_imagenet.py's CrossEntropyLabelSmooth when label_smoothing > 0 (the same formula)."""
    logits, logits_aux = output  # (B, K), (B, K) or None
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if logits_aux is not None:
        loss = loss + auxiliary_weight * F.cross_entropy(logits_aux, y, label_smoothing=label_smoothing)
    return loss, logits


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the input images (B, 3, H, W) in channels_last, as the weights of the network."""
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


class FinalRun:
    """Trains (or resumes) ``spec``'s network in ``run_dir``; evaluates on the test split every epoch
    and, when ``valid_loader`` is given, on the held-out validation split (kept best in ``best.pt``)."""

    def __init__(self, run_dir: str | Path, spec: NetworkSpec, train_loader, test_loader, settings: FinalSettings,
                 scheduler: SchedulerFactory, device: torch.device, valid_loader=None):
        if settings.auxiliary_weight > 0 and not spec.auxiliary:
            raise ValueError(f"auxiliary_weight={settings.auxiliary_weight} needs a network with an auxiliary head")
        self.run_dir, self.spec, self.s, self.device = Path(run_dir), spec, settings, device
        self.train_loader, self.test_loader, self.valid_loader = train_loader, test_loader, valid_loader
        self.model = spec.build().to(device)
        self.amp_dtype = amp_dtype(settings.precision, device)  # None = fp32
        if use_channels_last(settings.channels_last, device, self.amp_dtype):
            self.model.to(memory_format=torch.channels_last)
            self.model.register_forward_pre_hook(_channels_last_input)
        # DARTS cnn/train.py: SGD on all weights (auxiliary head included), lr schedule stepped once per epoch
        self.optimizer = torch.optim.SGD(self.model.parameters(), settings.lr, momentum=settings.momentum,
                                         weight_decay=settings.weight_decay)
        self.scheduler = scheduler(self.optimizer)
        cap = settings.steps_per_epoch or math.inf
        self.steps = {name: min(len(loader), cap) for name, loader in self._loaders(train=True)}
        self.start_epoch, self.best_valid_acc, self.best_epoch = 0, -math.inf, -1
        self.metrics: dict[str, float] = {}
        x, _ = next(iter(test_loader))  # (B, 3, H, W)
        self.params = count_parameters(self.model)
        self.flops = count_flops(self.model, x[:1])
        log.info("network %s: %.3fM params (without auxiliary head), %.1fM FLOPs (%.1fM mult-adds)",
                 spec.network.__name__, self.params / 1e6, self.flops / 1e6, self.flops / 2e6)

    def _loaders(self, train: bool) -> Iterable[tuple[str, Any]]:
        named = [("train", self.train_loader)] if train else []
        named += [("valid", self.valid_loader)] if self.valid_loader is not None else []
        return named + [("test", self.test_loader)]

    def resume(self) -> None:
        """Continue from ``run_dir/checkpoint.pt`` (model, optimizer, scheduler, epoch, RNG, best so far)."""
        state = checkpoint.load(self.run_dir / CHECKPOINT, map_location=self.device)
        if state["spec"] != self.spec.to_dict():
            raise ValueError(f"{self.run_dir / CHECKPOINT} was trained with {state['spec']}, not {self.spec.to_dict()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.best_valid_acc, self.best_epoch = state["best_valid_acc"], state["best_epoch"]
        self.metrics = state["metrics"]
        log.info("resumed %s at epoch %d of %d", self.run_dir, self.start_epoch + 1, self.s.epochs)

    def run(self) -> dict[str, Any]:
        """Train for the remaining epochs, then write and return ``result.json``."""
        text = repr(self.spec.genotype)
        (self.run_dir / "genotype.txt").write_text(text + "\n")
        write_json(self.run_dir / "genotype.json", self.spec.genotype.to_json())
        logger = Logger(self.run_dir)
        try:
            logger.text("final/genotype", text, self.start_epoch)
            logger.scalars("model", {"params_M": self.params / 1e6, "flops_M": self.flops / 1e6}, self.start_epoch)
            for epoch in range(self.start_epoch, self.s.epochs):
                self.metrics = self._epoch(epoch, logger)
        finally:
            logger.close()
        return self._finish()

    def _epoch(self, epoch: int, logger: Logger) -> dict[str, float]:
        start = time.time()
        lr = self.optimizer.param_groups[0]["lr"]
        # DARTS cnn/train.py: drop path rises linearly from 0 (epoch 0) towards drop_path_prob
        drop_prob = self.s.drop_path_prob * epoch / self.s.epochs
        self.model.drop_path_prob = drop_prob
        self.train_loader.set_epoch(epoch)
        loss_fn = partial(final_loss, auxiliary_weight=self.s.auxiliary_weight, label_smoothing=self.s.label_smoothing)
        train = train_epoch(self.model, self.train_loader, self.optimizer, self.steps["train"], self.device, loss_fn,
                            self.s.grad_clip, f"epoch {epoch}", self.s.progress, self.amp_dtype)
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"]}
        self.model.eval()
        for name, loader in self._loaders(train=False):
            result = evaluate(lambda x: self.model(x)[0], loader, self.steps[name], self.device, name, self.s.progress,
                              self.amp_dtype)
            metrics.update({f"{name}_loss": result["loss"], f"{name}_acc": result["acc"]})
        metrics.update(lr=lr, drop_path_prob=drop_prob, epoch_time=time.time() - start)
        logger.scalars("final", metrics, epoch)
        logger.flush()
        self.scheduler.step()
        if "valid_acc" in metrics and metrics["valid_acc"] > self.best_valid_acc:
            self.best_valid_acc, self.best_epoch = metrics["valid_acc"], epoch
            checkpoint.save({"epoch": epoch, "spec": self.spec.to_dict(), "model": self.model.state_dict(),
                             "metrics": metrics}, self.run_dir / BEST)
        self._save(epoch, metrics)
        log.info("epoch %d/%d lr %.4g drop_path %.3f train_acc %.2f%s test_acc %.2f (%.0fs)", epoch + 1,
                 self.s.epochs, lr, drop_prob, train["acc"],
                 f" valid_acc {metrics['valid_acc']:.2f}" if "valid_acc" in metrics else "",
                 metrics["test_acc"], metrics["epoch_time"])
        return metrics

    def _save(self, epoch: int, metrics: dict[str, float]) -> None:
        checkpoint.save({"epoch": epoch, "spec": self.spec.to_dict(), "model": self.model.state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "rng": checkpoint.rng_state(), "metrics": metrics, "best_valid_acc": self.best_valid_acc,
                         "best_epoch": self.best_epoch}, self.run_dir / CHECKPOINT)

    def _finish(self) -> dict[str, Any]:
        m = self.metrics
        result = {"test_accuracy": m["test_acc"], "test_loss": m["test_loss"], "params": self.params / 1e6,
                  "flops": self.flops, "madds": self.flops // 2, "genotype": repr(self.spec.genotype),
                  "genotype_json": self.spec.genotype.to_json(), "epochs": self.s.epochs,
                  "network": self.spec.to_dict(), "train_accuracy": m["train_acc"], "train_loss": m["train_loss"]}
        if self.valid_loader is not None:
            result.update(valid_accuracy=m["valid_acc"], best_valid_accuracy=self.best_valid_acc,
                          best_epoch=self.best_epoch)
        write_json(self.run_dir / "result.json", result)
        log.info("test accuracy %.2f%% (error %.2f%%) after %d epochs; %.3fM params", m["test_acc"],
                 100 - m["test_acc"], self.s.epochs, self.params / 1e6)
        return result
