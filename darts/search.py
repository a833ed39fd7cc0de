"""A gradient-based search run: epochs of bilevel steps, logging, checkpoints, results.

The run directory holds everything needed to inspect and resume the run:
``checkpoint.pt`` (atomic), ``genotypes.jsonl`` (one line per epoch), ``result.json``,
``genotype.txt``/``genotype.json`` (the final genotype) and the TensorBoard events.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from darts import checkpoint
from darts.logging import Logger
from darts.runtime import amp_dtype, use_channels_last
from darts.strategies.base import Strategy
from darts.trainer import evaluate, search_epoch
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


class Benchmark(Protocol):
    """A tabular benchmark: metrics of a genotype (e.g. NAS-Bench-201)."""

    def query(self, genotype: Any) -> dict[str, float]: ...


@dataclass
class SearchSettings:
    """The weight optimisation of the search (DARTS sec. 3.1.1 defaults)."""

    epochs: int = 50
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    steps_per_epoch: int | None = None
    progress: bool = True
    precision: str = "auto"
    channels_last: bool | str = "auto"
    fast: bool = True
    compile: bool = False


def cosine_lr(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from lr to lr_min over the epochs, per epoch (DARTS train_search.py CosineAnnealingLR)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


class SearchRun:
    """Runs (or resumes) a search in ``run_dir`` with a strategy on a supernet."""

    def __init__(self, run_dir: str | Path, space: SearchSpace, strategy: Strategy, train_loader, valid_loader,
                 settings: SearchSettings, device: torch.device, benchmark: Benchmark | None = None):
        self.run_dir = Path(run_dir)
        self.space, self.strategy, self.supernet = space, strategy, strategy.supernet
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.s = settings
        self.device = device
        self.benchmark = benchmark
        amp = amp_dtype(settings.precision, device)
        self.supernet.set_precision(amp, use_channels_last(settings.channels_last, device, amp))
        self.supernet.set_fast(settings.fast)
        if settings.compile:
            self.supernet.compile()
        self.optimizer = torch.optim.SGD(self.supernet.weight_parameters(), settings.lr,
                                         momentum=settings.momentum, weight_decay=settings.weight_decay)
        self.steps = min(len(train_loader), len(valid_loader))
        if settings.steps_per_epoch:
            self.steps = min(self.steps, settings.steps_per_epoch)
        self.start_epoch = 0
        self.metrics: dict[str, float] = {}
        if benchmark is not None:  # fail before training if the benchmark does not fit the space
            try:
                benchmark.query(strategy.genotype())
            except (ValueError, KeyError) as e:
                raise ValueError(f"the benchmark cannot score genotypes of {type(space).__name__} ({e}); "
                                 "benchmark.path is for search_space=nb201") from None

    def resume(self) -> None:
        """Continue from ``run_dir/checkpoint.pt``."""
        state = checkpoint.load(self.run_dir / CHECKPOINT, map_location=self.device)
        self.supernet.load_state_dict(state["supernet"])
        self.strategy.load_state_dict(state["strategy"])
        self.optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.metrics = state["metrics"]
        self._truncate_history()
        log.info("resumed %s at epoch %d", self.run_dir, self.start_epoch)

    def run(self) -> dict[str, Any]:
        """Search for the remaining epochs, then write and return ``result.json``."""
        logger = Logger(self.run_dir)
        try:
            for epoch in range(self.start_epoch, self.s.epochs):
                self.metrics = self._epoch(epoch, logger)
                self._save(epoch)
        finally:
            logger.close()
        return self._finish(self.metrics)

    def _epoch(self, epoch: int, logger: Logger) -> dict[str, float]:
        start = time.time()
        lr = cosine_lr(self.s.lr, self.s.lr_min, epoch, self.s.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.strategy.epoch_start(epoch, self.s.epochs)
        for loader in (self.train_loader, self.valid_loader):
            loader.set_epoch(epoch)
        train = search_epoch(self.supernet, self.strategy, self.train_loader, self.valid_loader, self.optimizer,
                             self.s.grad_clip, self.steps, self.device, f"epoch {epoch}", self.s.progress)
        self.supernet.eval()
        valid = evaluate(lambda x: self.supernet(x, self.strategy.mixing()), self.valid_loader, self.steps,
                         self.device, "valid", self.s.progress)
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"], "valid_loss": valid["loss"],
                   "valid_acc": valid["acc"], "lr": lr, "epoch_time": time.time() - start}
        genotype = self.strategy.genotype()
        record = {"epoch": epoch, "genotype": self.space.to_text(genotype), **metrics}
        logger.scalars("search", metrics, epoch)
        logger.scalars("arch", self.strategy.scalars(), epoch)
        for cell_type, w in self.strategy.op_weights().items():
            logger.heatmap(f"arch/{cell_type}", w, self.space.primitives, epoch)
        logger.text("arch/genotype", record["genotype"], epoch)
        if self.benchmark is not None:
            record["benchmark"] = self.benchmark.query(genotype)
            logger.scalars("benchmark", record["benchmark"], epoch)
            log.info("benchmark accuracy of the epoch's genotype: %s", record["benchmark"])
        logger.flush()
        with open(self.run_dir / "genotypes.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d/%d lr %.4g train_acc %.2f valid_acc %.2f (%.0fs) genotype %s", epoch + 1, self.s.epochs,
                 lr, train["acc"], valid["acc"], metrics["epoch_time"], record["genotype"])
        return metrics

    def _truncate_history(self) -> None:
        """Drop per-epoch records written after the checkpoint (a crash between the two)."""
        path = self.run_dir / "genotypes.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["epoch"] < self.start_epoch]
            path.write_text("".join(ln + "\n" for ln in lines))

    def _save(self, epoch: int) -> None:
        checkpoint.save({"epoch": epoch, "supernet": self.supernet.state_dict(), "strategy": self.strategy.state_dict(),
                         "optimizer": self.optimizer.state_dict(),
                         "rng": checkpoint.rng_state(), "metrics": self.metrics}, self.run_dir / CHECKPOINT)

    def _finish(self, metrics: dict[str, float]) -> dict[str, Any]:
        genotype = self.strategy.genotype()
        text = self.space.to_text(genotype)
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "epochs": self.s.epochs,
                  **{k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}}
        if self.benchmark is not None:
            result["benchmark"] = self.benchmark.query(genotype)
        (self.run_dir / "genotype.txt").write_text(text + "\n")
        write_json(self.run_dir / "genotype.json", self.space.to_json(genotype))
        write_json(self.run_dir / "result.json", result)
        log.info("final genotype %s", text)
        return result
