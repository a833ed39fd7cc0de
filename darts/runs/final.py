"""Retraining a cell from scratch in a full-size network, as the papers evaluate their cells (DARTS A.2; NB201 sec. 2.3).

``FinalRun`` trains the network of a ``NetworkSpec`` (``darts.runs.network_spec``) with a recipe
(``FinalSettings`` and a closed-form lr schedule, ``darts.schedules``) and evaluates it on the test split
every epoch (DARTS cnn/train.py); its run directory holds ``checkpoint.pt`` (last, atomic), ``best.pt``
(best validation accuracy, when a validation split is held out), ``genotype.txt``/``genotype.json``,
``result.json`` and the TensorBoard events. A network may return logits or ``(logits, logits_aux)``. With a teacher
(``darts.runs.distillation``) the main head's cross-entropy becomes the knowledge-distillation loss.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.checkpointing import checkpoint_each
from darts.context import Context
from darts.cost.counting import count_network, in_millions
from darts.hypergradients.base import Hypergradient
from darts.runs.base import EpochRun
from darts.runs.distillation import Distillation
from darts.runs.hyperparameters import HyperRecord, network_loss
from darts.runs.network_spec import NetworkSpec
from darts.runs.tensorboard_log import TensorBoardLog
from darts.schedules import Schedule
from darts.settings import SGD, integer, number
from darts.training import Trainer, evaluate

log = logging.getLogger(__name__)
BEST = "best.pt"


@dataclass(frozen=True)
class FinalSettings:
    """The retraining recipe, checked when built; defaults are DARTS's CIFAR-10 evaluation (paper A.2.1, cnn/train.py)."""

    epochs: int = 600
    optimizer: SGD = SGD(lr=0.025, weight_decay=3e-4, grad_clip=5.0)
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        integer("epochs", self.epochs, 1)
        number("auxiliary_weight", self.auxiliary_weight, 0)
        number("drop_path_prob", self.drop_path_prob, 0, 1)
        number("label_smoothing", self.label_smoothing, 0, 1)
        integer("steps_per_epoch", self.steps_per_epoch, 1, nullable=True)


def split_output(output: torch.Tensor | tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, logits_aux or None) of a network's output: logits (B, K), or a (logits, logits_aux) pair."""
    return output if isinstance(output, tuple) else (output, None)


def final_loss(output: torch.Tensor | tuple, y: torch.Tensor, auxiliary_weight: float,
               label_smoothing: float = 0.0, distill: Distillation | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits): CE(logits) + auxiliary_weight * CE(logits_aux) (DARTS cnn/train.py), both label-smoothed
    as cnn/train_imagenet.py's CrossEntropyLabelSmooth when label_smoothing > 0 (the same formula). With ``distill``,
    ``output`` is (network output, teacher output) (``Distillation.wrap``) and CE(logits) is replaced by
    ``distill.loss`` (Hinton et al. 2015); the auxiliary head keeps its plain CE."""
    if distill is not None:
        output, teacher_output = output
    logits, logits_aux = split_output(output)  # (B, K), (B, K) or None
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing) if distill is None \
        else distill.loss(logits, split_output(teacher_output)[0], y, label_smoothing)
    if logits_aux is not None:
        loss = loss + auxiliary_weight * F.cross_entropy(logits_aux, y, label_smoothing=label_smoothing)
    return loss, logits


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the input images (B, 3, H, W) in channels_last, as the weights of the network."""
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


class FinalRun(EpochRun):
    """Trains (or resumes) ``spec``'s network in ``run_dir``; evaluates on the test split every epoch and, when
    ``valid_loader`` is given, on the held-out validation split (kept best in ``best.pt``).

    Args:
        run_dir: the run directory.
        spec: the network and its genotype.
        train_loader, test_loader, valid_loader: the data (``valid_loader`` optional; with several ranks, each
            rank's shard: gradients are averaged, evaluation summed over the shards).
        settings: the recipe.
        schedule: the learning rate at (fractional) epoch t: ``schedule(lr, t, epochs)`` (``darts.schedules``).
        context: device, precision, memory format, ranks (rank 0 writes the run directory) and progress.
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        sync_bn: SyncBatchNorm (batch statistics over all ranks; CUDA only).
        distill: a teacher to distill from (``darts.runs.distillation``); None trains on the labels alone.
        hypergradient: adapts training hyperparameters along their hypergradients (``darts.hypergradients``), on
            ``valid_loader``'s batches where the method needs held-out data.
    """

    what = "the retraining"

    def __init__(self, run_dir: str | Path, spec: NetworkSpec, train_loader: Any, test_loader: Any,
                 settings: FinalSettings, schedule: Schedule, context: Context = Context(), valid_loader: Any = None,
                 hparams: dict[str, Any] | None = None, sync_bn: bool = False, distill: Distillation | None = None,
                 hypergradient: Hypergradient | None = None):
        if settings.auxiliary_weight > 0 and not spec.auxiliary:
            raise ValueError(f"auxiliary_weight={settings.auxiliary_weight} needs a network with an auxiliary head")
        if sync_bn and (context.dist.world == 1 or context.device.type != "cuda"):
            raise ValueError("sync_bn=true needs torchrun on GPUs (PyTorch's SyncBatchNorm runs on CUDA only)")
        self.hyper = HyperRecord(hypergradient)
        around_step = self.hyper.around(valid_loader)  # refuses a method that needs held-out data without any
        super().__init__(run_dir, context, settings.epochs, hparams)
        self.spec, self.s = spec, settings
        self.test_loader, self.valid_loader = test_loader, valid_loader
        self.model = self._network(spec.build(), sync_bn)
        if context.checkpoint_cells:  # memory.checkpoint=cells: each cell recomputed in backward
            if not isinstance(getattr(self.model, "cells", None), nn.ModuleList):
                raise ValueError(f"memory.checkpoint=cells needs a network with a `cells` list; "
                                 f"{type(self.model).__name__} has none (choose memory.checkpoint=none)")
            checkpoint_each(self.model.cells)
        if settings.drop_path_prob > 0 and not hasattr(self.model, "drop_path_prob"):
            raise ValueError(f"drop_path_prob={settings.drop_path_prob} but {type(self.model).__name__} has no drop "
                             "path; set drop_path_prob=0")
        self.distill, self.teacher_acc = distill, math.nan
        if distill is not None:  # frozen, on the student's device and memory format
            self._network(distill.teacher, False)
        trained = context.dist.wrap(self.model)  # DistributedDataParallel with several ranks: gradients averaged
        # DARTS cnn/train.py: SGD on all weights (auxiliary head included); NB201 200E.config: Nesterov
        self.optimizer = settings.optimizer.build(self.model.parameters())
        self.hyper.bind(list(self.model.named_parameters()), self.optimizer, network_loss(self.model), context.dist)
        cap = settings.steps_per_epoch or math.inf
        self.steps = {name: min(len(loader), cap) for name, loader in [("train", train_loader), *self._evaluated()]}
        loss = partial(final_loss, auxiliary_weight=settings.auxiliary_weight, label_smoothing=settings.label_smoothing,
                       distill=distill)
        self.trainer = Trainer(trained if distill is None else distill.wrap(trained), self.optimizer, train_loader,
                               self.steps["train"], settings.epochs, settings.optimizer.lr, schedule, context, loss,
                               settings.optimizer.grad_clip, watched=self.model, around_step=around_step)
        self.best_valid_acc, self.best_epoch = -math.inf, -1
        self.metrics: dict[str, float] = {}
        x, _ = next(iter(test_loader))  # (B, 3, H, W)
        self.cost = in_millions(count_network(self.model, x[:1]))
        log.info("network %s: %.3fM params (without auxiliary head), %.1fM FLOPs (multiply-accumulates)",
                 type(self.model).__name__, self.cost["params"], self.cost["flops"])

    def _network(self, network: nn.Module, sync_bn: bool) -> nn.Module:
        """``network`` on the context's device and memory format (SyncBatchNorm when asked), identical on every rank."""
        network.to(self.context.device)
        if sync_bn:  # batch statistics over every rank's batch (the global batch), as one GPU would compute them
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        self.context.dist.broadcast([*network.parameters(), *network.buffers()])
        if self.context.channels_last:
            network.to(memory_format=torch.channels_last)
            network.register_forward_pre_hook(_channels_last_input)
        return network

    def _evaluated(self) -> Iterable[tuple[str, Any]]:
        """The splits evaluated after every epoch: valid (when held out), then test."""
        return ([("valid", self.valid_loader)] if self.valid_loader is not None else []) + [("test", self.test_loader)]

    def state_dict(self) -> dict[str, Any]:
        """Spec, weights, optimizer, the epoch's metrics and the best validation accuracy so far."""
        return {"spec": self.spec.to_dict(), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "metrics": self.metrics, "best_valid_acc": self.best_valid_acc, "best_epoch": self.best_epoch,
                **self.hyper.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them (the spec must be this run's)."""
        if state["spec"] != self.spec.to_dict():
            raise ValueError(f"{self.dir / 'checkpoint.pt'} was trained with {state['spec']}, not {self.spec.to_dict()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_valid_acc, self.best_epoch = state["best_valid_acc"], state["best_epoch"]
        self.metrics = state["metrics"]
        self.hyper.load_state_dict(state)

    def start(self, board: TensorBoardLog) -> None:
        """The genotype files, the network's text, diagram and size, and the teacher's test accuracy."""
        text = self.dir.write_genotype(self.spec.space, self.spec.genotype)
        board.text("final/genotype", text, self.start_epoch)
        board.cells("final/diagram", self.spec.space.cell_graphs(self.spec.genotype), self.start_epoch)
        board.scalars("model", {f"{k}_M": v for k, v in self.cost.items()}, self.start_epoch)
        if self.distill is not None:
            self.teacher_acc = evaluate(lambda x: split_output(self.distill.teacher(x))[0], self.test_loader,
                                        self.steps["test"], self.context, "teacher")["acc"]
            log.info("distilling from %s (T=%g, alpha=%g): teacher test accuracy %.2f%%", self.distill.source,
                     self.distill.temperature, self.distill.alpha, self.teacher_acc)

    def epoch(self, epoch: int, board: TensorBoardLog) -> None:
        """Drop path for the epoch, its training, the evaluation on each split, best.pt and the logs."""
        start = time.time()
        drop_prob = self.s.drop_path_prob * epoch / self.s.epochs  # DARTS cnn/train.py: rises linearly from 0
        if self.s.drop_path_prob > 0:
            self.model.drop_path_prob = drop_prob
        train = self.trainer.epoch(epoch)
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"]}
        if self.distill is not None:  # the loss's two terms: train_ce_loss, train_kd_loss
            metrics.update(self.distill.epoch_terms(self.context.dist))
        self.model.eval()
        for name, loader in self._evaluated():
            result = evaluate(lambda x: split_output(self.model(x))[0], loader, self.steps[name], self.context, name)
            metrics.update({f"{name}_loss": result["loss"], f"{name}_acc": result["acc"]})
        self.context.dist.broadcast(list(self.model.buffers()))  # BN statistics as rank 0's: one state to save
        self.metrics = {**metrics, "lr": train["lr"], "drop_path_prob": drop_prob, "epoch_time": time.time() - start}
        board.scalars("final", self.metrics, epoch)
        self.hyper.log(board, epoch)
        board.flush()
        if "valid_acc" in metrics and metrics["valid_acc"] > self.best_valid_acc:
            self.best_valid_acc, self.best_epoch = metrics["valid_acc"], epoch
            self.dir.save_checkpoint({"epoch": epoch, "spec": self.spec.to_dict(), "model": self.model.state_dict(),
                                      "metrics": self.metrics}, BEST)
        log.info("epoch %d/%d lr %.4g drop_path %.3f train_acc %.2f%s test_acc %.2f (%.0fs)", epoch + 1,
                 self.s.epochs, train["lr"], drop_prob, metrics["train_acc"],
                 f" valid_acc {metrics['valid_acc']:.2f}" if "valid_acc" in metrics else "",
                 metrics["test_acc"], self.metrics["epoch_time"])

    def fault(self, err: Any) -> str:
        """The weights' learning rate."""
        return f"optimizer.lr={self.s.optimizer.lr}"

    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """Test accuracy and loss, size, genotype, network, training and validation metrics (and the teacher's)."""
        m, space, genotype = self.metrics, self.spec.space, self.spec.genotype
        result = {"test_accuracy": m["test_acc"], "test_loss": m["test_loss"], "params": self.cost["params"],
                  "cost": self.cost, "genotype": space.to_text(genotype),
                  "genotype_json": space.to_json(genotype), "epochs": self.s.epochs,
                  "network": self.spec.to_dict(), "train_accuracy": m["train_acc"], "train_loss": m["train_loss"],
                  **self.hyper.result()}
        if self.valid_loader is not None:
            result.update(valid_accuracy=m["valid_acc"], best_valid_accuracy=self.best_valid_acc,
                          best_epoch=self.best_epoch)
        if self.distill is not None:
            result.update(distillation=self.distill.record(self.teacher_acc))
        log.info("test accuracy %.2f%% (error %.2f%%) after %d epochs; %.3fM params", m["test_acc"],
                 100 - m["test_acc"], self.s.epochs, self.cost["params"])
        return result

    def summary(self, result: dict[str, Any]) -> dict[str, float]:
        """Test accuracy, size (and the best validation accuracy)."""
        return {"test_accuracy": result["test_accuracy"], "params_M": result["params"],
                "flops_M": result["cost"]["flops"],
                **({"best_valid_accuracy": result["best_valid_accuracy"]} if "best_valid_accuracy" in result else {})}
