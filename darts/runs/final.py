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
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.runs.distillation import Distillation
from darts.distributed import SINGLE, Distributed
from darts.divergence import Diverged, check_finite, diverged
from darts.model_stats import count_flops, count_parameters
from darts.runs import checkpoint
from darts.runs.directory import RunDirectory
from darts.runs.network_spec import NetworkSpec
from darts.runs.tensorboard_log import TensorBoardLog
from darts.context import Runtime
from darts.schedules import Cosine, Exponential
from darts.training import evaluate, set_lr, train_epoch

log = logging.getLogger(__name__)
BEST = "best.pt"


@dataclass(frozen=True)
class FinalSettings:
    """The retraining recipe; defaults are DARTS's CIFAR-10 evaluation (paper A.2.1, cnn/train.py)."""

    epochs: int = 600
    lr: float = 0.025
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0
    steps_per_epoch: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
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


class FinalRun:
    """Trains (or resumes) ``spec``'s network in ``run_dir``; evaluates on the test split every epoch and, when
    ``valid_loader`` is given, on the held-out validation split (kept best in ``best.pt``).

    Args:
        run_dir: the run directory.
        spec: the network and its genotype.
        train_loader, test_loader, valid_loader: the data (``valid_loader`` optional).
        settings: the recipe.
        schedule: the learning rate at (fractional) epoch t: ``schedule(lr, t, epochs)`` (``darts.schedules``).
        runtime: device, precision and memory format.
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        dist: the ranks of a torchrun run: each trains on its shard (the loaders given are the rank's), gradients
            averaged, evaluation summed over the ranks' shards; rank 0 writes the run directory.
        sync_bn: SyncBatchNorm (batch statistics over all ranks; CUDA only).
        distill: a teacher to distill from (``darts.runs.distillation``); None trains on the labels alone.
    """

    def __init__(self, run_dir: str | Path, spec: NetworkSpec, train_loader, test_loader, settings: FinalSettings,
                 schedule: Cosine | Exponential, runtime: Runtime, valid_loader=None, hparams: dict[str, Any] | None = None,
                 dist: Distributed = SINGLE, sync_bn: bool = False, distill: Distillation | None = None):
        if settings.auxiliary_weight > 0 and not spec.auxiliary:
            raise ValueError(f"auxiliary_weight={settings.auxiliary_weight} needs a network with an auxiliary head")
        if sync_bn and (dist.world == 1 or runtime.device.type != "cuda"):
            raise ValueError("sync_bn=true needs torchrun on GPUs (PyTorch's SyncBatchNorm runs on CUDA only)")
        self.dir, self.spec, self.s, self.schedule = RunDirectory(run_dir, writer=dist.main), spec, settings, schedule
        self.hparams, self.dist = hparams or {}, dist
        self.s = replace(settings, progress=settings.progress and dist.main)
        self.device, self.amp_dtype = runtime.device, runtime.amp_dtype  # amp_dtype None = fp32
        self.train_loader, self.test_loader, self.valid_loader = train_loader, test_loader, valid_loader
        self.model = spec.build().to(runtime.device)
        if sync_bn:  # batch statistics over every rank's batch (the global batch), as one GPU would compute them
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        dist.broadcast([*self.model.parameters(), *self.model.buffers()])
        if settings.drop_path_prob > 0 and not hasattr(self.model, "drop_path_prob"):
            raise ValueError(f"drop_path_prob={settings.drop_path_prob} but {type(self.model).__name__} has no drop "
                             "path; set drop_path_prob=0")
        if runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.model.register_forward_pre_hook(_channels_last_input)
        self.distill, self.teacher_acc = distill, math.nan
        if distill is not None:  # frozen, on the student's device and memory format
            distill.teacher.to(runtime.device)
            if runtime.channels_last:
                distill.teacher.to(memory_format=torch.channels_last).register_forward_pre_hook(_channels_last_input)
        # DARTS cnn/train.py: SGD on all weights (auxiliary head included); NB201 200E.config: Nesterov
        self.trained = dist.wrap(self.model)  # DistributedDataParallel with several ranks: gradients averaged
        self.optimizer = torch.optim.SGD(self.model.parameters(), settings.lr, momentum=settings.momentum,
                                         nesterov=settings.nesterov, weight_decay=settings.weight_decay)
        cap = settings.steps_per_epoch or math.inf
        self.steps = {name: min(len(loader), cap) for name, loader in self._loaders(train=True)}
        self.start_epoch, self.best_valid_acc, self.best_epoch = 0, -math.inf, -1
        self.metrics: dict[str, float] = {}
        x, _ = next(iter(test_loader))  # (B, 3, H, W)
        self.params = count_parameters(self.model)
        self.flops = count_flops(self.model, x[:1])
        log.info("network %s: %.3fM params (without auxiliary head), %.1fM FLOPs (%.1fM mult-adds)",
                 type(self.model).__name__, self.params / 1e6, self.flops / 1e6, self.flops / 2e6)

    def _loaders(self, train: bool) -> Iterable[tuple[str, Any]]:
        named = [("train", self.train_loader)] if train else []
        named += [("valid", self.valid_loader)] if self.valid_loader is not None else []
        return named + [("test", self.test_loader)]

    def resume(self) -> None:
        """Continue from the checkpoint (model, optimizer, epoch, RNG, best so far); a larger ``epochs`` replans
        the schedule of the epochs not yet run; starts over if no checkpoint was completed."""
        if not self.dir.has_checkpoint:
            log.warning("%s has no completed checkpoint (it stopped during its first epoch): starting over", self.dir.path)
            return
        state = self.dir.load_checkpoint()
        if state["spec"] != self.spec.to_dict():
            raise ValueError(f"{self.dir / 'checkpoint.pt'} was trained with {state['spec']}, not {self.spec.to_dict()}")
        self.start_epoch = state["epoch"] + 1
        if self.s.epochs < self.start_epoch:
            raise ValueError(f"epochs={self.s.epochs} is below the {self.start_epoch} epochs {self.dir.path} has run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"], self.dist.rank)
        self.best_valid_acc, self.best_epoch = state["best_valid_acc"], state["best_epoch"]
        self.metrics = state["metrics"]
        log.info("resumed %s at epoch %d of %d", self.dir.path, self.start_epoch + 1, self.s.epochs)

    def run(self) -> dict[str, Any]:
        """Train for the remaining epochs, then write and return ``result.json``."""
        self.dir.remove_temporary()
        text = self.dir.write_genotype(self.spec.space, self.spec.genotype)
        board = self.dir.tensorboard()
        try:
            board.text("final/genotype", text, self.start_epoch)
            board.cells("final/diagram", self.spec.space.cell_graphs(self.spec.genotype), self.start_epoch)
            board.scalars("model", {"params_M": self.params / 1e6, "flops_M": self.flops / 1e6}, self.start_epoch)
            if self.distill is not None:
                self.teacher_acc = evaluate(lambda x: split_output(self.distill.teacher(x))[0], self.test_loader,
                                            self.steps["test"], self.device, "teacher", self.s.progress,
                                            self.amp_dtype, self.dist)["acc"]
                log.info("distilling from %s (T=%g, alpha=%g): teacher test accuracy %.2f%%", self.distill.source,
                         self.distill.temperature, self.distill.alpha, self.teacher_acc)
            for epoch in range(self.start_epoch, self.s.epochs):
                self.metrics = self._epoch(epoch, board)
            result = self._finish()
            board.result(self.hparams, {"test_accuracy": result["test_accuracy"], "params_M": result["params"],
                                        "madds_M": result["madds"] / 1e6,
                                        **({"best_valid_accuracy": result["best_valid_accuracy"]}
                                           if "best_valid_accuracy" in result else {})})
        finally:
            board.close()
        return result

    def _epoch(self, epoch: int, board: TensorBoardLog) -> dict[str, float]:
        start = time.time()
        lr = self.schedule(self.s.lr, epoch, self.s.epochs)
        set_lr(self.optimizer, lr)
        per_step = partial(self._lr_at_step, epoch) if self.schedule.per_step else None
        # DARTS cnn/train.py: drop path rises linearly from 0 (epoch 0) towards drop_path_prob
        drop_prob = self.s.drop_path_prob * epoch / self.s.epochs
        if self.s.drop_path_prob > 0:
            self.model.drop_path_prob = drop_prob
        self.train_loader.set_epoch(epoch)
        try:
            metrics = self._steps(epoch, per_step)
        except Diverged as err:
            raise diverged("the retraining", epoch, err, f"optimizer.lr={self.s.lr}") from None
        self.dist.broadcast(list(self.model.buffers()))  # BN statistics as rank 0's: one state to checkpoint
        metrics.update(lr=lr, drop_path_prob=drop_prob, epoch_time=time.time() - start)
        board.scalars("final", metrics, epoch)
        board.flush()
        if "valid_acc" in metrics and metrics["valid_acc"] > self.best_valid_acc:
            self.best_valid_acc, self.best_epoch = metrics["valid_acc"], epoch
            self.dir.save_checkpoint({"epoch": epoch, "spec": self.spec.to_dict(), "model": self.model.state_dict(),
                                      "metrics": metrics}, BEST)
        self._save(epoch, metrics)
        log.info("epoch %d/%d lr %.4g drop_path %.3f train_acc %.2f%s test_acc %.2f (%.0fs)", epoch + 1,
                 self.s.epochs, lr, drop_prob, metrics["train_acc"],
                 f" valid_acc {metrics['valid_acc']:.2f}" if "valid_acc" in metrics else "",
                 metrics["test_acc"], metrics["epoch_time"])
        return metrics

    def _steps(self, epoch: int, per_step) -> dict[str, float]:
        """The epoch's training steps, then the evaluation on each split; Diverged on a non-finite loss or weight."""
        loss_fn = partial(final_loss, auxiliary_weight=self.s.auxiliary_weight, label_smoothing=self.s.label_smoothing,
                          distill=self.distill)
        trained = self.trained if self.distill is None else self.distill.wrap(self.trained)
        train = train_epoch(trained, self.train_loader, self.optimizer, self.steps["train"], self.device, loss_fn,
                            self.s.grad_clip, f"epoch {epoch}", self.s.progress, self.amp_dtype, per_step, self.dist)
        check_finite(self.model.named_parameters())
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"]}
        if self.distill is not None:  # the loss's two terms: train_ce_loss, train_kd_loss
            metrics.update(self.distill.epoch_terms(self.dist))
        self.model.eval()
        for name, loader in self._loaders(train=False):
            result = evaluate(lambda x: split_output(self.model(x))[0], loader, self.steps[name], self.device, name,
                              self.s.progress, self.amp_dtype, self.dist)
            metrics.update({f"{name}_loss": result["loss"], f"{name}_acc": result["acc"]})
        return metrics

    def _lr_at_step(self, epoch: int, step: int) -> float:
        """The per-step schedule's rate at ``step`` of ``epoch``."""
        return self.schedule(self.s.lr, epoch + step / self.steps["train"], self.s.epochs)

    def _save(self, epoch: int, metrics: dict[str, float]) -> None:
        self.dir.save_checkpoint({"epoch": epoch, "spec": self.spec.to_dict(), "model": self.model.state_dict(),
                                  "optimizer": self.optimizer.state_dict(), "rng": self.dist.gather(checkpoint.rng_state()),
                                  "metrics": metrics, "best_valid_acc": self.best_valid_acc,
                                  "best_epoch": self.best_epoch})

    def _finish(self) -> dict[str, Any]:
        m, space, genotype = self.metrics, self.spec.space, self.spec.genotype
        result = {"test_accuracy": m["test_acc"], "test_loss": m["test_loss"], "params": self.params / 1e6,
                  "flops": self.flops, "madds": self.flops // 2, "genotype": space.to_text(genotype),
                  "genotype_json": space.to_json(genotype), "epochs": self.s.epochs,
                  "network": self.spec.to_dict(), "train_accuracy": m["train_acc"], "train_loss": m["train_loss"]}
        if self.valid_loader is not None:
            result.update(valid_accuracy=m["valid_acc"], best_valid_accuracy=self.best_valid_acc,
                          best_epoch=self.best_epoch)
        if self.distill is not None:
            result.update(distillation=self.distill.record(self.teacher_acc))
        self.dir.write_result(result)
        log.info("test accuracy %.2f%% (error %.2f%%) after %d epochs; %.3fM params", m["test_acc"],
                 100 - m["test_acc"], self.s.epochs, self.params / 1e6)
        return result
