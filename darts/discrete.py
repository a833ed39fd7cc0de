"""A discrete search run: a strategy proposes genotypes, an evaluator scores them, everything is recorded.

The run directory holds ``history.jsonl`` (one line per evaluated candidate, appended as it is
evaluated: index, genotype text, score, cost, wall seconds of the evaluation, seconds since the start
and the evaluator's metrics), ``checkpoint.pt`` (the evaluator's state, e.g. a trained supernet;
atomic), ``result.json``, ``genotype.txt``/``genotype.json`` and the TensorBoard events.

Resuming replays the history: the strategy is rebuilt from its seed and told the recorded scores,
which reproduces its random state exactly (``darts.strategies.discrete``); each replayed genotype
must equal the recorded one. The run then continues to the budget, so an interrupted run, or one
given a larger ``strategy.budget``, ends with the same history as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from darts import checkpoint
from darts.evaluators import Evaluation, Evaluator
from darts.logging import Logger
from darts.search import Benchmark, write_json
from darts.strategies.discrete import DiscreteStrategy
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"  # the gradient runs' name too, so `resume=true` finds either kind
HISTORY = "history.jsonl"


class DiscreteRun:
    """Runs (or resumes) a discrete search in ``run_dir``.

    Args:
        run_dir: the run directory.
        space: the search space (genotype text and JSON).
        strategy: proposes genotypes (``ask``/``tell``).
        evaluator: scores them (``evaluate_all``, with its worker pool).
        benchmark: optional tabular benchmark reporting the best genotype's accuracies (NB201 space).
        progress: a progress bar over the evaluations.
    """

    def __init__(self, run_dir: str | Path, space: SearchSpace, strategy: DiscreteStrategy, evaluator: Evaluator,
                 benchmark: Benchmark | None = None, progress: bool = True):
        self.run_dir, self.space, self.strategy, self.evaluator = Path(run_dir), space, strategy, evaluator
        self.benchmark, self.progress = benchmark, progress
        self.records: list[dict[str, Any]] = []  # the history so far (read back when resuming)
        self.best: tuple[float, int, Any] | None = None  # score, index, genotype of the first best candidate
        self.cost = 0.0
        if benchmark is not None:
            try:
                benchmark.query(space.sample(torch.Generator().manual_seed(0)))
            except (ValueError, KeyError) as e:
                raise ValueError(f"the benchmark cannot score genotypes of {type(space).__name__} ({e}); "
                                 "benchmark.path is for search_space=nb201") from None

    def resume(self) -> None:
        """Read back ``history.jsonl`` (dropping a line cut short by a crash) and the evaluator's checkpoint."""
        self.evaluator.load_state_dict(checkpoint.load(self.run_dir / CHECKPOINT)["evaluator"])
        self.records = read_history(self.run_dir / HISTORY)
        if len(self.records) > self.strategy.budget:
            raise ValueError(f"{self.run_dir / HISTORY} holds {len(self.records)} evaluations, more than "
                             f"strategy.budget={self.strategy.budget}; resume with a budget of at least that")
        (self.run_dir / HISTORY).write_text("".join(json.dumps(r) + "\n" for r in self.records))
        log.info("resumed %s after %d evaluations", self.run_dir, len(self.records))

    def run(self) -> dict[str, Any]:
        """Evaluate up to the budget, then write and return ``result.json``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        logger = Logger(self.run_dir)
        try:
            self.evaluator.prepare(on_epoch=partial(self._prepare_epoch, logger))
            self._save()
            with open(self.run_dir / HISTORY, "a" if self.records else "w") as history:
                self._search(logger, history)
        finally:
            logger.close()
        return self._finish()

    def _search(self, logger: Logger, history: TextIO) -> None:
        start = time.time() - (self.records[-1]["elapsed"] if self.records else 0.0)
        bar = tqdm(total=self.strategy.budget, initial=len(self.records), desc="evaluations",
                   disable=not self.progress, dynamic_ncols=True)
        index = 0
        while not self.strategy.done:
            genotypes = self.strategy.ask()
            scores = self._replay(genotypes, index)
            fresh = list(enumerate(genotypes, start=index))[len(scores):]
            for (i, genotype), (result, seconds) in zip(fresh, self.evaluator.evaluate_all(fresh)):
                record = self._record(i, genotype, result, seconds, time.time() - start)
                history.write(json.dumps(record) + "\n")
                history.flush()
                self._log(logger, record, start)
                scores.append(result.score)
                bar.update()
            self.strategy.tell(scores)
            index += len(genotypes)
            if fresh:  # a replayed generation was logged before the interruption
                logger.scalars("strategy", self.strategy.scalars(), index)
                logger.flush()
        bar.close()

    def _replay(self, genotypes: list[Any], index: int) -> list[float]:
        """Scores of this generation's candidates already in the history (checked to be the same genotypes)."""
        scores = []
        for i, (genotype, record) in enumerate(zip(genotypes, self.records[index:]), start=index):
            text = self.space.to_text(genotype)
            if record["genotype"] != text:
                raise ValueError(f"{self.run_dir / HISTORY} does not match this run: candidate {i} is "
                                 f"{record['genotype']} there but {text} on replay (seed, strategy or space changed?)")
            self._track(i, genotype, record["score"], record["cost"])
            scores.append(record["score"])
        return scores

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

    def _log(self, logger: Logger, record: dict[str, Any], start: float) -> None:
        """Per candidate: its score and cost, the best score against evaluations and against seconds; per new
        best genotype: its text and benchmark accuracies."""
        n, best = record["index"] + 1, self.best[0]
        logger.scalars("search", {"score": record["score"], "cost": record["cost"]}, n)
        # walltime = start + elapsed, so TensorBoard's "relative" axis is time since the start across resumes
        logger.writer.add_scalar("search/best_score", best, n, walltime=start + record["elapsed"])
        logger.writer.add_scalar("search/best_score_by_time", best, round(record["elapsed"]))
        if self.best[1] == record["index"]:  # a new best genotype
            logger.text("search/genotype", record["genotype"], n)
            logger.scalars("benchmark", self._report(self.best[2]), n)

    def _prepare_epoch(self, logger: Logger, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch of the evaluator's preparation (supernet training): log it and checkpoint."""
        logger.scalars("supernet", metrics, epoch)
        logger.flush()
        self._save()
        log.info("supernet epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _report(self, genotype: Any) -> dict[str, float]:
        """The benchmark's accuracies of ``genotype`` (the benchmark, else what the evaluator knows)."""
        return self.benchmark.query(genotype) if self.benchmark is not None else self.evaluator.report(genotype)

    def _save(self) -> None:
        checkpoint.save({"evaluator": self.evaluator.state_dict()}, self.run_dir / CHECKPOINT)

    def _finish(self) -> dict[str, Any]:
        score, index, genotype = self.best
        text = self.space.to_text(genotype)
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "score": score,
                  "best_index": index, "evaluations": len(self.records), "budget": self.strategy.budget,
                  "cost": self.cost, "elapsed": self.records[-1]["elapsed"]}
        report = self._report(genotype)
        if report:
            result["benchmark"] = report
        (self.run_dir / "genotype.txt").write_text(text + "\n")
        write_json(self.run_dir / "genotype.json", self.space.to_json(genotype))
        write_json(self.run_dir / "result.json", result)
        log.info("best of %d evaluations: score %.2f (candidate %d) %s%s", len(self.records), score, index, text,
                 f"; benchmark {report}" if report else "")
        return result


def read_history(path: Path) -> list[dict[str, Any]]:
    """The records of ``history.jsonl``; a last line cut short (a crash mid-write) is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for k, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                log.warning("dropping the incomplete last line of %s", path)
                break
            raise ValueError(f"{path}:{k + 1} is not a JSON record") from None
    return records
