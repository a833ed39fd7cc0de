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

from darts.context import Context
from darts.cost.budget import Budget, costs
from darts.data.search_split import SearchData
from darts.data.tabular import TabularBenchmark
from darts.divergence import Diverged, check_finite
from darts.hypergradients.base import Hypergradient
from darts.runs.base import EpochRun
from darts.runs.hyperparameters import HyperRecord
from darts.runs.tensorboard_log import TensorBoardLog
from darts.schedules import Cosine
from darts.selections.base import Argmax, EarlyStop, Selection
from darts.selections.hessian import EIGENVALUE, HessianMonitor
from darts.settings import SGD, integer
from darts.strategies.base import SearchContext, Strategy, supernet_options
from darts.strategies.bilevel import search_epoch
from darts.supernet import Mixing
from darts.training import evaluate, frozen, set_lr
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
HISTORY = "genotypes.jsonl"
SELECTION = "selection.jsonl"


class SearchRun(EpochRun):
    """Runs (or resumes) a gradient search in ``run_dir``: builds the supernet the strategy needs and the strategy,
    then searches.

    Args:
        run_dir: the run directory.
        space: the search space.
        data: the search split (weight half, arch half).
        strategy: builds the strategy: ``strategy(supernet=..., space=...)`` (a partial from the config); its class's
            ``supernet_options`` say how the supernet is built.
        context: device, precision, memory format, fast path, compile, ranks (each searches its shard of both
            halves with ``batch_size`` images per step, gradients averaged; rank 0 writes the run directory) and
            progress.
        benchmark: optional tabular benchmark scoring each epoch's genotype.
        epochs, batch_size, steps_per_epoch, seed: the search loop (DARTS sec. 3.1.1 defaults).
        optimizer: SGD on the weights, cosine-annealed per epoch (DARTS cnn/train_search.py).
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        selection: chooses the reported genotype (``darts.selections``; default: the strategy's own).
        hessian: measures the dominant arch-Hessian eigenvalue of L_val on the epochs it is due
            (``darts.selections.hessian``; default: never), logged as ``arch/hessian_eigenvalue`` and in the epoch's
            genotypes.jsonl record.
        budget: a cost target the arch objective penalises (``darts.cost.budget``; the space needs a cost model).
        cost_input_size: the image side costs are counted at (32: CIFAR-sized data).
        latency_table: a ``darts-latency`` table of the space: latency joins the recorded costs (and may be budgeted).
        hypergradient: steps the weights' training hyperparameters on the arch step's batches (``darts.hypergradients``).

    In a space with a cost model, each epoch records the exact cost of its genotype (``cost`` in genotypes.jsonl,
    ``arch/<metric>`` in TensorBoard) and the expected cost under the op weights (``arch/expected_<metric>``), and
    result.json the final genotype's (``cost``; with a budget, ``budget``: target and whether it is met).
    """

    what = "the search"

    def __init__(self, run_dir: str | Path, space: SearchSpace, data: SearchData, strategy: Callable[..., Strategy],
                 context: Context = Context(), benchmark: TabularBenchmark | None = None, epochs: int = 50,
                 batch_size: int = 64, steps_per_epoch: int | None = None, seed: int = 2, optimizer: SGD = SGD(),
                 hparams: dict[str, Any] | None = None, selection: Selection | None = None,
                 hessian: HessianMonitor | None = None, budget: Budget | None = None, cost_input_size: int = 32,
                 latency_table: str | None = None, hypergradient: Hypergradient | None = None):
        integer("epochs", epochs, 1)
        integer("batch_size", batch_size, 1)
        integer("steps_per_epoch", steps_per_epoch, 1, nullable=True)
        super().__init__(run_dir, context, epochs, hparams)
        self.selection, self.hessian = selection or Argmax(), hessian or HessianMonitor()
        dist = context.dist
        if dist.world > 1 and not self.selection.distributed:
            raise ValueError(f"selection={self.selection.name} runs in one process, not on {dist.world} ranks")
        self.space, self.benchmark, self.sgd = space, benchmark, optimizer
        self.schedule = Cosine(optimizer.lr_min)  # DARTS train_search.py: CosineAnnealingLR per epoch
        self.supernet = space.build_supernet(data.num_classes, context, supernet_options(strategy))
        self.strategy = strategy(supernet=self.supernet, space=space)
        self.budget = budget
        self.costs = costs(space, data.num_classes, cost_input_size, budget, latency_table)
        self.strategy.budget = budget
        dist.broadcast([*self.supernet.parameters(), *self.supernet.buffers(), *self.strategy.arch_parameters()])
        self._wrap()
        # DARTS train_search.py: both halves use the training augmentation
        self.train_loader = data.weight_loader(batch_size, seed)
        self.valid_loader = data.arch_loader(batch_size, seed + 1)
        self.optimizer = optimizer.build(self.supernet.weight_parameters())
        self.hyper = HyperRecord(hypergradient)
        self.hyper.bind_search(self.supernet, self.strategy, self.optimizer, self.context.dist)
        self.steps = min(len(self.train_loader), len(self.valid_loader), steps_per_epoch or math.inf)
        self.metrics: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []  # the genotypes.jsonl records of the epochs run
        self.early: EarlyStop | None = None  # set when the selection's stopping rule ends the search

    def _wrap(self) -> None:
        """The module the weight step runs through: DDP over the weights (the strategy averages the arch
        parameters' gradients itself, so they are frozen while DDP is built)."""
        with frozen(self.strategy.arch_parameters()):
            self.weight_model = self.context.dist.wrap(self.supernet, self.strategy.samples_paths)

    def state_dict(self) -> dict[str, Any]:
        """Supernet, strategy, optimizer, the last epoch's metrics (and the budget's and hypergradients' state)."""
        budget = {} if self.budget is None else {"budget": self.budget.state_dict()}
        return {"supernet": self.supernet.state_dict(), "strategy": self.strategy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "metrics": self.metrics, **budget, **self.hyper.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them, the supernet first brought to the checkpoint's shape (DrNAS's progressive stages)."""
        self.strategy.load_state_dict(state["strategy"])
        self._reshape(self.start_epoch - 1)
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.metrics = state["metrics"]
        if self.budget is not None:
            self.budget.load_state_dict(state["budget"])
        self.hyper.load_state_dict(state)

    def start(self, board: TensorBoardLog) -> None:
        """Drop genotypes.jsonl records written after the checkpoint (a kill between the two; a torn last line)."""
        self.history = [r for r in self.dir.read_jsonl(HISTORY) if r["epoch"] < self.start_epoch]
        self.dir.rewrite_jsonl(HISTORY, self.history)
        board.arch_layout(self.supernet.cell_types, self.supernet.num_edges)

    def epoch(self, epoch: int, board: TensorBoardLog) -> None:
        """One epoch of bilevel steps, its evaluation on the arch half, its record and logs."""
        start = time.time()
        lr = self.schedule(self.sgd.lr, epoch, self.epochs)
        set_lr(self.optimizer, lr)
        self.strategy.epoch_start(epoch, self.epochs)
        self._reshape(epoch)
        for loader in (self.train_loader, self.valid_loader):
            loader.set_epoch(epoch)
        train, valid = self._steps(epoch)
        self.metrics = {"train_loss": train["loss"], "train_acc": train["acc"], "valid_loss": valid["loss"],
                        "valid_acc": valid["acc"], "lr": lr, "epoch_time": time.time() - start}
        genotype = self.strategy.genotype()
        record = {"epoch": epoch, "genotype": self.space.to_text(genotype), **self.metrics}
        if self.costs is not None:
            record["cost"] = self.costs.cost(genotype)
        if self.hessian.due(epoch, self.epochs):
            record[EIGENVALUE] = self.hessian.measure(self.strategy, self.supernet, self.valid_loader, self.context.dist)
            board.scalars("arch", {EIGENVALUE: record[EIGENVALUE]}, epoch)
            log.info("dominant eigenvalue of the arch Hessian of L_val: %.4g", record[EIGENVALUE])
        self._log(board, epoch, record, genotype)
        self.dir.append_jsonl(HISTORY, record)
        self.history.append(record)
        log.info("epoch %d/%d lr %.4g train_acc %.2f valid_acc %.2f (%.0fs) genotype %s", epoch + 1, self.epochs,
                 lr, train["acc"], valid["acc"], self.metrics["epoch_time"], record["genotype"])

    def _reshape(self, epoch: int) -> None:
        """Let the strategy reshape the supernet for ``epoch``; train with the optimizer it rebuilds then."""
        optimizer = self.strategy.reshape(epoch, self.optimizer)
        if optimizer is None:
            return
        self.optimizer = optimizer
        self._wrap()
        self.hyper.bind_search(self.supernet, self.strategy, self.optimizer, self.context.dist)
        log.info("supernet reshaped for epoch %d: %.3fM weights", epoch,
                 sum(p.numel() for p in self.supernet.weight_parameters()) / 1e6)

    def _steps(self, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        """The epoch's search steps and its evaluation on the arch half; Diverged if a loss, a weight or an arch
        parameter is not finite."""
        train = search_epoch(self.weight_model, self.strategy, self.train_loader, self.valid_loader, self.optimizer,
                             self.sgd.grad_clip, self.steps, f"epoch {epoch}", self.hyper.method)
        named = dict(self.supernet.named_parameters())
        check_finite([(n, p) for n, p in named.items() if not n.startswith("alphas.")])
        check_finite([(n, p) for n, p in named.items() if n.startswith("alphas.")], arch=True)
        check_finite([(f"arch parameter {i} of the strategy", p) for i, p in enumerate(self.strategy.arch_parameters())
                      if all(p is not q for q in named.values())], arch=True)
        self.supernet.eval()
        valid = evaluate(lambda x: self.supernet(x, self.strategy.mixing()), self.valid_loader, self.steps,
                         self.context, "valid")
        self.context.dist.broadcast(list(self.supernet.buffers()))  # BN statistics as rank 0's: one state to save
        return train, valid

    def fault(self, err: Diverged) -> str:
        """The arch learning rate if an arch parameter went non-finite first (the weights still finite), else the
        weights' learning rate."""
        return "strategy.arch_lr" if err.arch else f"optimizer.lr={self.sgd.lr}"

    def _log(self, board: TensorBoardLog, epoch: int, record: dict[str, Any], genotype: Any) -> None:
        """The epoch's scalars, the strategy's scalars, the architecture (heatmaps, op weights, cell diagrams), the
        genotype text and the benchmark's accuracies of the epoch's genotype."""
        board.scalars("search", self.metrics, epoch)
        board.scalars("arch", self.strategy.scalars(), epoch)
        self.hyper.log(board, epoch)
        if self.costs is not None:
            board.scalars("arch", {**record["cost"], **self._expected_costs()}, epoch)
        if self.budget is not None:
            board.scalars("budget", self.budget.scalars(), epoch)
        board.arch(self.strategy.op_weights(), self.space.ops, self.space.cell_graphs(genotype), epoch)
        board.text("arch/genotype", record["genotype"], epoch)
        if self.benchmark is not None:
            record["benchmark"] = self.benchmark.query(genotype)
            board.scalars("benchmark", record["benchmark"], epoch)
            log.info("benchmark accuracy of the epoch's genotype: %s", record["benchmark"])
        board.flush()

    def _expected_costs(self) -> dict[str, float]:
        """The expected cost of every metric under the strategy's op weights (``expected_<metric>``)."""
        mixing = {t: Mixing(w) for t, w in self.strategy.op_weights().items()}
        with torch.no_grad():
            return {f"expected_{m}": float(self.costs.expected(mixing, m)) for m in self.costs.metrics}

    def stop(self) -> bool:
        """The selection's stopping rule after the newest epoch run, never after the last (R-DARTS
        train_search.py); also true for a resumed run that had stopped."""
        if not self.history or self.history[-1]["epoch"] >= self.epochs - 1:
            return False
        self.early = self.selection.stop(self.history)
        if self.early is not None:
            log.info("%s stops the search after epoch %d (ratio %.4g): the genotype and metrics are epoch %d's",
                     self.selection.name, self.early.decided_at, self.early.ratio, self.early.epoch)
        return self.early is not None

    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """The genotype (an early stop's epoch's, else the selection's) with its metrics."""
        genotype, metrics, selection = self._stopped(self.early) if self.early is not None else self._select(board)
        text = self.dir.write_genotype(self.space, genotype)
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "epochs": len(self.history),
                  "search_time": sum(r["epoch_time"] for r in self.history), "selection": selection,
                  **self.hyper.result(), **metrics}  # finite: the divergence guard stops a run before a non-finite value is reported
        if self.benchmark is not None:
            result["benchmark"] = self.benchmark.query(genotype)
        if self.costs is not None:
            result["cost"] = self.costs.cost(genotype)
        if self.budget is not None:
            result["budget"] = self._verdict(genotype)
        log.info("final genotype %s", text)
        return result

    def _verdict(self, genotype: Any) -> dict[str, Any]:
        """The budget's metric, target, the genotype's exact cost and whether it is within the target (logged)."""
        b = self.budget
        verdict = {"metric": b.metric, "target": b.target, "cost": self.costs.cost(genotype)[b.metric],
                   "met": b.meets(genotype)}
        log.info("%s of the genotype: %.6g against the target %.6g: %s", b.metric, verdict["cost"], b.target,
                 "within the budget" if verdict["met"] else "OVER the budget")
        return verdict

    def summary(self, result: dict[str, Any]) -> dict[str, float]:
        """Validation accuracy, search time and the benchmark's accuracies."""
        return {"valid_acc": result["valid_acc"], "search_time": result["search_time"],
                **{f"benchmark/{k}": v for k, v in result.get("benchmark", {}).items()}}

    def _stopped(self, stop: EarlyStop) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """An early-stopped search's genotype and metrics: those of epoch ``stop.epoch`` (R-DARTS train_search.py)."""
        record = next(r for r in self.history if r["epoch"] == stop.epoch)
        details = {"method": self.selection.name, "stopped_after_epoch": stop.decided_at,
                   "genotype_epoch": stop.epoch, "ratio": stop.ratio, "last_genotype": self.history[-1]["genotype"]}
        return self.space.parse(record["genotype"]), {k: record[k] for k in self.metrics}, details

    def _select(self, board: TensorBoardLog) -> tuple[Any, dict[str, float], dict[str, Any]]:
        """The run's selection; its decisions go to selection.jsonl."""
        for loader in (self.train_loader, self.valid_loader):
            loader.set_epoch(self.epochs)  # the same data whether or not the run was resumed
        context = SearchContext(self.supernet, self.train_loader, self.valid_loader, self.optimizer, self.steps)
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

