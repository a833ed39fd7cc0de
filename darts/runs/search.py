"""A gradient-based search run: epochs of bilevel steps, logging, checkpoints, results.

The run directory (``darts.runs.directory``) holds ``checkpoint.pt``, ``genotypes.jsonl`` (one record
per epoch), ``result.json``, ``genotype.txt``/``genotype.json`` (the final genotype), ``selection.jsonl`` (the
decisions of a selection phase) and TensorBoard events.

After the epochs, the selection (``darts.selections``) chooses the reported genotype: the strategy's own, DARTS-PT's
perturbation-based one, or, when R-DARTS's early stopping ended the search, that of an earlier epoch (with that
epoch's metrics). A run checkpoints after every epoch; a selection phase runs after the last checkpoint, so a run
resumed during it redoes it from there (exactly: the random state is the checkpoint's, the loaders restart at the
same epoch).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from darts.distributed import SINGLE, Distributed
from darts.divergence import Diverged, check_finite, diverged
from darts.selections.hessian import EIGENVALUE, HessianMonitor
from darts.runs import checkpoint
from darts.runs.directory import RunDirectory
from darts.runs.tensorboard_log import TensorBoardLog
from darts.context import Runtime
from darts.schedules import Cosine
from darts.data.search_split import SearchData
from darts.selections.base import Argmax, EarlyStop, Selection
from darts.strategies.base import SearchContext, Strategy
from darts.data.tabular import TabularBenchmark
from darts.strategies.bilevel import search_epoch
from darts.training import evaluate, frozen, set_lr
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
HISTORY = "genotypes.jsonl"
SELECTION = "selection.jsonl"


class SearchRun:
    """Runs (or resumes) a gradient search in ``run_dir``: builds the supernet and the strategy, then searches.

    Args:
        run_dir: the run directory.
        space: the search space.
        data: the search split (weight half, arch half).
        strategy: builds the strategy: ``strategy(supernet=..., space=...)`` (a partial from the config).
        runtime: device, precision, memory format, fast path and compile of the supernet.
        benchmark: optional tabular benchmark scoring each epoch's genotype.
        epochs, batch_size, steps_per_epoch, seed, progress: the search loop (DARTS sec. 3.1.1 defaults).
        lr, lr_min, momentum, weight_decay, grad_clip: SGD on the weights, cosine-annealed per epoch.
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        dist: the ranks of a torchrun run (``darts.distributed``): each searches its shard of both halves with
            ``batch_size`` images per step, gradients averaged; rank 0 writes the run directory.
        selection: chooses the reported genotype (``darts.selections``; default: the strategy's own).
        hessian: measures the dominant arch-Hessian eigenvalue of L_val on the epochs it is due (``darts.selections.hessian``;
            default: never), logged as ``arch/hessian_eigenvalue`` and in the epoch's genotypes.jsonl record.
    """

    def __init__(self, run_dir: str | Path, space: SearchSpace, data: SearchData, strategy: Callable[..., Strategy],
                 runtime: Runtime, benchmark: TabularBenchmark | None = None, epochs: int = 50, batch_size: int = 64,
                 steps_per_epoch: int | None = None, lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9,
                 weight_decay: float = 3e-4, grad_clip: float = 5.0, seed: int = 2, progress: bool = True,
                 hparams: dict[str, Any] | None = None, dist: Distributed = SINGLE, selection: Selection | None = None,
                 hessian: HessianMonitor | None = None):
        if epochs < 1:
            raise ValueError(f"epochs={epochs} must be >= 1")
        self.selection, self.hessian = selection or Argmax(), hessian or HessianMonitor()
        if dist.world > 1 and not self.selection.distributed:
            raise ValueError(f"selection={self.selection.name} runs in one process, not on {dist.world} ranks")
        self.dir, self.space, self.benchmark = RunDirectory(run_dir, writer=dist.main), space, benchmark
        self.hparams, self.dist = hparams or {}, dist
        self.epochs, self.grad_clip, self.device = epochs, grad_clip, runtime.device
        self.progress = progress and dist.main
        self.lr, self.schedule = lr, Cosine(lr_min)  # DARTS train_search.py: CosineAnnealingLR per epoch
        self.supernet = space.build_supernet(data.num_classes, runtime)
        self.strategy = strategy(supernet=self.supernet, space=space)
        self.strategy.dist = dist
        dist.broadcast([*self.supernet.parameters(), *self.supernet.buffers(), *self.strategy.arch_parameters()])
        with frozen(self.strategy.arch_parameters()):  # DDP averages the weights' gradients; the strategy the arch's
            self.weight_model = dist.wrap(self.supernet, self.strategy.samples_paths)
        # DARTS train_search.py: both halves use the training augmentation
        self.train_loader = data.weight_loader(batch_size, seed)
        self.valid_loader = data.arch_loader(batch_size, seed + 1)
        self.optimizer = torch.optim.SGD(self.supernet.weight_parameters(), lr, momentum=momentum,
                                         weight_decay=weight_decay)
        self.steps = min(len(self.train_loader), len(self.valid_loader), steps_per_epoch or math.inf)
        self.start_epoch = 0
        self.metrics: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []  # the genotypes.jsonl records of the epochs run

    def resume(self) -> None:
        """Continue from the run directory's checkpoint (or start over if none was completed)."""
        if not self.dir.has_checkpoint:
            log.warning("%s has no completed checkpoint (it stopped during its first epoch): starting over", self.dir.path)
            return
        state = self.dir.load_checkpoint()
        self.start_epoch = state["epoch"] + 1
        if self.epochs < self.start_epoch:
            raise ValueError(f"epochs={self.epochs} is below the {self.start_epoch} epochs {self.dir.path} has run")
        self.strategy.load_state_dict(state["strategy"])
        self._reshape(self.start_epoch - 1)  # the checkpoint's supernet shape (DrNAS's progressive stages)
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"], self.dist.rank)
        self.metrics = state["metrics"]
        log.info("resumed %s at epoch %d", self.dir.path, self.start_epoch)

    def run(self) -> dict[str, Any]:
        """Search for the remaining epochs (fewer when the selection stops it early), choose the genotype (the
        strategy's selection phase, then the run's selection), then write and return ``result.json``."""
        self.dir.remove_temporary()
        # records written after the checkpoint (a kill between the two) are dropped, as is a torn last line
        self.history = [r for r in self.dir.read_jsonl(HISTORY) if r["epoch"] < self.start_epoch]
        self.dir.rewrite_jsonl(HISTORY, self.history)
        board = self.dir.tensorboard()
        try:
            board.arch_layout(self.supernet.cell_types, self.supernet.num_edges)
            stop = self._early_stop()  # a resumed run that had stopped
            for epoch in range(self.start_epoch, self.epochs if stop is None else self.start_epoch):
                self.metrics = self._epoch(epoch, board)
                self._save(epoch)
                if (stop := self._early_stop()) is not None:
                    break
            genotype, metrics, selection = self._stopped(stop) if stop is not None else self._select(board)
            result = self._finish(genotype, metrics, selection)
            board.result(self.hparams, {"valid_acc": result["valid_acc"], "search_time": result["search_time"],
                                        **{f"benchmark/{k}": v for k, v in result.get("benchmark", {}).items()}})
        finally:
            board.close()
        return result

    def _epoch(self, epoch: int, board: TensorBoardLog) -> dict[str, float]:
        start = time.time()
        lr = self.schedule(self.lr, epoch, self.epochs)
        set_lr(self.optimizer, lr)
        self.strategy.epoch_start(epoch, self.epochs)
        self._reshape(epoch)
        for loader in (self.train_loader, self.valid_loader):
            loader.set_epoch(epoch)
        train, valid = self._steps(epoch)
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"], "valid_loss": valid["loss"],
                   "valid_acc": valid["acc"], "lr": lr, "epoch_time": time.time() - start}
        genotype = self.strategy.genotype()
        record = {"epoch": epoch, "genotype": self.space.to_text(genotype), **metrics}
        if self.hessian.due(epoch, self.epochs):
            record[EIGENVALUE] = self.hessian.measure(self.strategy, self.supernet, self.valid_loader, self.dist)
            board.scalars("arch", {EIGENVALUE: record[EIGENVALUE]}, epoch)
            log.info("dominant eigenvalue of the arch Hessian of L_val: %.4g", record[EIGENVALUE])
        self._log(board, epoch, metrics, record, genotype)
        if self.benchmark is not None:
            record["benchmark"] = self.benchmark.query(genotype)
            board.scalars("benchmark", record["benchmark"], epoch)
            log.info("benchmark accuracy of the epoch's genotype: %s", record["benchmark"])
        board.flush()
        self.dir.append_jsonl(HISTORY, record)
        self.history.append(record)
        log.info("epoch %d/%d lr %.4g train_acc %.2f valid_acc %.2f (%.0fs) genotype %s", epoch + 1, self.epochs,
                 lr, train["acc"], valid["acc"], metrics["epoch_time"], record["genotype"])
        return metrics

    def _reshape(self, epoch: int) -> None:
        """Let the strategy reshape the supernet for ``epoch``; train with the optimizer it rebuilds then."""
        optimizer = self.strategy.reshape(epoch, self.optimizer)
        if optimizer is None:
            return
        self.optimizer = optimizer
        with frozen(self.strategy.arch_parameters()):  # as in __init__: DDP over the new weights
            self.weight_model = self.dist.wrap(self.supernet, self.strategy.samples_paths)
        log.info("supernet reshaped for epoch %d: %.3fM weights", epoch,
                 sum(p.numel() for p in self.supernet.weight_parameters()) / 1e6)

    def _steps(self, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        """The epoch's search steps and its evaluation on the arch half; Diverged, naming the epoch, the step and
        the setting most likely at fault, if a loss, a weight or an arch parameter is not finite."""
        try:
            train = search_epoch(self.weight_model, self.strategy, self.train_loader, self.valid_loader, self.optimizer,
                                 self.grad_clip, self.steps, self.device, f"epoch {epoch}", self.progress, self.dist)
            named = dict(self.supernet.named_parameters())
            arch = {f"arch parameter {i} of the strategy": p for i, p in enumerate(self.strategy.arch_parameters())
                    if all(p is not q for q in named.values())}
            check_finite([*named.items(), *arch.items()])
            self.supernet.eval()
            valid = evaluate(lambda x: self.supernet(x, self.strategy.mixing()), self.valid_loader, self.steps,
                             self.device, "valid", self.progress, dist=self.dist)
            self.dist.broadcast(list(self.supernet.buffers()))  # BN statistics as rank 0's: one state to checkpoint
        except Diverged as err:
            raise diverged("the search", epoch, err, self._fault(err)) from None
        return train, valid

    def _fault(self, err: Diverged) -> str:
        """The setting most likely at fault: the arch learning rate if the arch parameters went non-finite first (or
        alone), else the weights' learning rate."""
        def finite(params: list[torch.Tensor]) -> bool:
            return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

        message = str(err)
        if "arch parameters at" in message or ("alphas" in message and finite(self.supernet.weight_parameters())):
            return "strategy.arch_lr"
        return f"optimizer.lr={self.lr}"

    def _log(self, board: TensorBoardLog, epoch: int, metrics: dict[str, float], record: dict[str, Any],
             genotype: Any) -> None:
        """The epoch's scalars, the strategy's scalars, the architecture (heatmaps, op weights, cell diagrams) and
        the genotype text."""
        board.scalars("search", metrics, epoch)
        board.scalars("arch", self.strategy.scalars(), epoch)
        board.arch(self.strategy.op_weights(), self.space.primitives, self.space.cell_graphs(genotype), epoch)
        board.text("arch/genotype", record["genotype"], epoch)

    def _save(self, epoch: int) -> None:
        self.dir.save_checkpoint({"epoch": epoch, "supernet": self.supernet.state_dict(),
                                  "strategy": self.strategy.state_dict(), "optimizer": self.optimizer.state_dict(),
                                  "rng": self.dist.gather(checkpoint.rng_state()), "metrics": self.metrics})

    def _early_stop(self) -> EarlyStop | None:
        """The selection's stopping rule after the newest epoch run, never after the last (R-DARTS train_search.py)."""
        if not self.history or self.history[-1]["epoch"] >= self.epochs - 1:
            return None
        stop = self.selection.stop(self.history)
        if stop is not None:
            log.info("%s stops the search after epoch %d (ratio %.4g): the genotype and metrics are epoch %d's",
                     self.selection.name, stop.decided_at, stop.ratio, stop.epoch)
        return stop

    def _stopped(self, stop: EarlyStop) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """An early-stopped search's genotype and metrics: those of epoch ``stop.epoch`` (R-DARTS train_search.py)."""
        record = next(r for r in self.history if r["epoch"] == stop.epoch)
        details = {"method": self.selection.name, "stopped_after_epoch": stop.decided_at,
                   "genotype_epoch": stop.epoch, "ratio": stop.ratio, "last_genotype": self.history[-1]["genotype"]}
        return self.space.parse(record["genotype"]), {k: record[k] for k in self.metrics}, details

    def _select(self, board: TensorBoardLog) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """The strategy's selection phase, then the run's selection; the decisions go to selection.jsonl."""
        for loader in (self.train_loader, self.valid_loader):
            loader.set_epoch(self.epochs)  # the same data whether or not the run was resumed
        context = SearchContext(self.supernet, self.train_loader, self.valid_loader, self.optimizer, self.steps,
                                self.device, self.progress)
        self.strategy.select(context)
        searched = self.space.to_text(self.strategy.genotype())
        if self.dir.writer:  # a resumed run redoes the phase: its earlier decisions go
            (self.dir / SELECTION).unlink(missing_ok=True)
        decisions = []

        def record(decision: dict[str, Any]) -> None:
            decision = {"decision_index": len(decisions), **decision}
            decisions.append(decision)
            self.dir.append_jsonl(SELECTION, decision)
            board.text("selection/decision", json.dumps(decision), decision["decision_index"])

        genotype = self.selection.select(self.strategy, self.space, context, record)
        details = {"method": self.selection.name}
        if decisions:
            details.update(search_genotype=searched, decisions=len(decisions))
        return genotype, self.metrics, details

    def _finish(self, genotype: Any, metrics: dict[str, float], selection: dict[str, Any]) -> dict[str, Any]:
        text = self.dir.write_genotype(self.space, genotype)
        search_time = sum(r["epoch_time"] for r in self.history)  # all epochs, resumed or not
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "epochs": len(self.history),
                  "search_time": search_time, "selection": selection,
                  **metrics}  # finite: the divergence guard stops a run before a non-finite value is reported
        if self.benchmark is not None:
            result["benchmark"] = self.benchmark.query(genotype)
        self.dir.write_result(result)
        log.info("final genotype %s", text)
        return result
