"""A discrete search run: a strategy proposes genotypes, an evaluator scores them, everything is recorded.

The run directory holds ``history.jsonl`` (one line per evaluated candidate, appended as it is
evaluated: index, genotype text, score, cost, wall seconds of the evaluation, seconds since the start
and the evaluator's metrics), ``checkpoint.pt`` (the evaluator's state, e.g. a trained supernet;
atomic), ``result.json``, ``genotype.txt``/``genotype.json`` and the TensorBoard events.

Resuming replays the history: the strategy is rebuilt from its seed and told the recorded scores and
costs, which reproduces its random state exactly (``darts.strategies.discrete``); each replayed genotype
must equal the recorded one. The run then continues to the budget, so an interrupted run, or one
given a larger ``strategy.budget``, ends with the same history as an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from darts.distributed import SINGLE, Distributed
from darts.evaluators import Evaluation, Evaluator
from darts.runs.directory import RunDirectory
from darts.runs.tensorboard_log import TensorBoardLog
from darts.search_data import SearchData
from darts.strategies.discrete import DiscreteStrategy
from darts.tabular import TabularBenchmark
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
HISTORY = "history.jsonl"


class DiscreteRun:
    """Runs (or resumes) a discrete search in ``run_dir``.

    Args:
        run_dir: the run directory.
        space: the search space (genotype text and JSON).
        data: the search split, handed to the evaluator (loaded only if it asks).
        strategy: builds the strategy: ``strategy(space=...)`` (a partial from the config).
        evaluator: builds the evaluator: ``evaluator(space=..., data=...)`` (a partial from the config).
        benchmark: optional tabular benchmark reporting the best genotype's accuracies.
        progress: a progress bar over the evaluations.
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        warm_start: optional; ``warm_start(space=..., data=...)`` lists genotypes that the strategy's initial
            design draws before any uniform sample (e.g. the best of a pool by a zero-cost proxy).
        dist: must be a single process (a discrete search is not run under torchrun).
    """

    def __init__(self, run_dir: str | Path, space: SearchSpace, data: SearchData,
                 strategy: Callable[..., DiscreteStrategy], evaluator: Callable[..., Evaluator],
                 benchmark: TabularBenchmark | None = None, progress: bool = True, hparams: dict[str, Any] | None = None,
                 warm_start: Callable[..., list[Any]] | None = None, dist: Distributed = SINGLE):
        if dist.world > 1:
            raise ValueError("a discrete search runs in one process, not under torchrun; its evaluator scores "
                             "candidates concurrently instead (evaluator.workers, one GPU each when several are visible)")
        self.dir, self.space, self.benchmark, self.progress = RunDirectory(run_dir), space, benchmark, progress
        self.hparams = hparams or {}
        self.strategy = strategy(space=space)
        self.evaluator = evaluator(space=space, data=data)
        self.warm_start = None if warm_start is None else partial(warm_start, space=space, data=data)
        self.records: list[dict[str, Any]] = []  # the history so far (read back when resuming)
        self.best: tuple[float, int, Any] | None = None  # score, index, genotype of the first best candidate
        self.cost = 0.0

    def resume(self) -> None:
        """Read back ``history.jsonl`` (dropping a line cut short by a kill) and the evaluator's checkpoint (or start
        over if none was completed)."""
        if not self.dir.has_checkpoint:
            log.warning("%s has no completed checkpoint (it stopped before its first evaluation): starting over",
                        self.dir.path)
            return
        self.evaluator.load_state_dict(self.dir.load_checkpoint()["evaluator"])
        self.records = self.dir.read_jsonl(HISTORY)
        if len(self.records) > self.strategy.budget:
            raise ValueError(f"{self.dir / HISTORY} holds {len(self.records)} evaluations, more than "
                             f"strategy.budget={self.strategy.budget}; resume with a budget of at least that")
        log.info("resumed %s after %d evaluations", self.dir.path, len(self.records))

    def run(self) -> dict[str, Any]:
        """Evaluate up to the budget, then write and return ``result.json``."""
        self.dir.remove_temporary()
        self.dir.rewrite_jsonl(HISTORY, self.records)  # a torn last line dropped; a new run starts empty
        board = self.dir.tensorboard()
        try:
            self.evaluator.prepare(on_epoch=partial(self._prepare_epoch, board))
            self._save()
            if self.warm_start is not None:  # deterministic, so a resumed run replays the same genotypes
                self.strategy.warm = list(self.warm_start())
            self._search(board)
            result = self._finish()
            board.cells("search/diagram", self.space.cell_graphs(self.best[2]), len(self.records))
            board.result(self.hparams, {"score": result["score"], "cost": result["cost"],
                                        **{f"benchmark/{k}": v for k, v in result.get("benchmark", {}).items()}})
        finally:
            board.close()
        return result

    def _search(self, board: TensorBoardLog) -> None:
        start = time.time() - (self.records[-1]["elapsed"] if self.records else 0.0)
        bar = tqdm(total=self.strategy.budget, initial=len(self.records), desc="evaluations",
                   disable=not self.progress, dynamic_ncols=True)
        index = 0
        while not self.strategy.done:
            genotypes = self.strategy.ask()
            told = self._replay(genotypes, index)
            fresh = list(enumerate(genotypes, start=index))[len(told):]
            for (i, genotype), (result, seconds) in zip(fresh, self.evaluator.evaluate_all(fresh)):
                record = self._record(i, genotype, result, seconds, time.time() - start)
                self.dir.append_jsonl(HISTORY, record)
                self._log(board, record, start)
                told.append((result.score, result.cost))
                bar.update()
            self.strategy.tell([score for score, _ in told], [cost for _, cost in told])
            index += len(genotypes)
            if fresh:  # a replayed generation was logged before the interruption
                board.scalars("strategy", self.strategy.scalars(), index)
                board.flush()
        bar.close()

    def _replay(self, genotypes: list[Any], index: int) -> list[tuple[float, float]]:
        """(score, cost) of this generation's candidates already in the history (checked to be the same genotypes)."""
        told = []
        for i, (genotype, record) in enumerate(zip(genotypes, self.records[index:]), start=index):
            text = self.space.to_text(genotype)
            if record["genotype"] != text:
                raise ValueError(f"{self.dir / HISTORY} does not match this run: candidate {i} is "
                                 f"{record['genotype']} there but {text} on replay (seed, strategy or space changed?)")
            self._track(i, genotype, record["score"], record["cost"])
            told.append((record["score"], record["cost"]))
        return told

    def _track(self, index: int, genotype: Any, score: float, cost: float) -> None:
        """Update the best candidate (the first of highest score) and the total cost."""
        if self.best is None or score > self.best[0]:
            self.best = (score, index, genotype)
        self.cost += cost

    def _record(self, index: int, genotype: Any, result: Evaluation, seconds: float, elapsed: float) -> dict:
        self._track(index, genotype, result.score, result.cost)
        record = {"index": index, "genotype": self.space.to_text(genotype), "score": result.score,
                  "cost": result.cost, "time": seconds, "elapsed": elapsed, **result.metrics}
        self.records.append(record)
        log.info("[%d/%d] score %.2f (best %.2f) cost %.1fs %s", index + 1, self.strategy.budget, result.score,
                 self.best[0], result.cost, record["genotype"])
        return record

    def _log(self, board: TensorBoardLog, record: dict[str, Any], start: float) -> None:
        """Per candidate: its score and cost, the best score against evaluations and against seconds; per new
        best genotype: its text and benchmark accuracies."""
        n, best = record["index"] + 1, self.best[0]
        board.scalars("search", {"score": record["score"], "cost": record["cost"]}, n)
        # walltime = start + elapsed, so TensorBoard's "relative" axis is time since the start across resumes
        board.writer.add_scalar("search/best_score", best, n, walltime=start + record["elapsed"])
        board.writer.add_scalar("search/best_score_by_time", best, round(record["elapsed"]))
        if self.best[1] == record["index"]:  # a new best genotype
            board.text("search/genotype", record["genotype"], n)
            board.scalars("benchmark", self._report(self.best[2]), n)

    def _prepare_epoch(self, board: TensorBoardLog, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch of the evaluator's preparation (supernet training): log it and checkpoint."""
        board.scalars("supernet", metrics, epoch)
        board.flush()
        self._save()
        log.info("supernet epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _report(self, genotype: Any) -> dict[str, float]:
        """The benchmark's accuracies of ``genotype`` (the benchmark, else what the evaluator knows)."""
        return self.benchmark.query(genotype) if self.benchmark is not None else self.evaluator.report(genotype)

    def _save(self) -> None:
        self.dir.save_checkpoint({"evaluator": self.evaluator.state_dict()})

    def _finish(self) -> dict[str, Any]:
        score, index, genotype = self.best
        text = self.dir.write_genotype(self.space, genotype)
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "score": score,
                  "best_index": index, "evaluations": len(self.records), "budget": self.strategy.budget,
                  "cost": self.cost, "elapsed": self.records[-1]["elapsed"]}
        report = self._report(genotype)
        if report:
            result["benchmark"] = report
        self.dir.write_result(result)
        log.info("best of %d evaluations: score %.2f (candidate %d) %s%s", len(self.records), score, index, text,
                 f"; benchmark {report}" if report else "")
        return result
