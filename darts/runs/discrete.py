"""A discrete search run: a strategy proposes genotypes, an evaluator scores them, everything is recorded.

The run directory holds ``history.jsonl`` (one line per evaluated candidate, appended as it is
evaluated: index, genotype text, fidelity, score, cost, wall seconds of the evaluation, seconds since the
start and the evaluator's metrics), ``checkpoint.pt`` (the evaluator's state, e.g. a trained supernet, and the
strategy's ``state_dict`` after the last generation, e.g. a swarm; atomic), ``result.json``,
``genotype.txt``/``genotype.json`` and the TensorBoard events.

Resuming replays the history: the strategy is rebuilt from its seed and told the recorded scores and
costs, which reproduces its random state exactly (``darts.strategies.discrete.base``); each replayed genotype
must equal the recorded one, at the recorded fidelity. The run then continues to the budget, so an
interrupted run, or one given a larger ``strategy.budget``, ends with the same history as an uninterrupted
one. The result is the best candidate at a final fidelity (``DiscreteStrategy.final``: any fidelity for
random search and evolution, the top one for Hyperband and BOHB).

In a space with a cost model (``darts.cost.model.CostModel``; or an injected ``cost(genotype) -> {"params", "flops"[,
"latency"]}``), each history record holds its genotype's exact cost (``genotype_cost``) and the result the best
genotype's (``cost``; the evaluations' total seconds are ``evaluation_cost``); a ``constraint`` keeps infeasible genotypes from
being evaluated (the result counts them: ``rejected``); cost ``objectives`` make the search multi-objective: after
each generation ``pareto.jsonl`` gets the Pareto front of the evaluations so far (genotypes and objective values) and
its hypervolume, and the result holds the final ``pareto_front`` and ``hypervolume``. ``pareto.jsonl`` is rebuilt
when a run resumes, by the replay.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tqdm import tqdm

from darts.context import Context
from darts.cost.latency import cost_model
from darts.data.search_split import SearchData
from darts.data.tabular import TabularBenchmark
from darts.evaluators import Evaluation, Evaluator
from darts.runs.base import Run
from darts.runs.tensorboard_log import TensorBoardLog
from darts.selections.base import Selection
from darts.selections.hessian import HessianMonitor
from darts.strategies.discrete.base import DiscreteStrategy
from darts.strategies.discrete.constraint import Constraint, Cost, cached
from darts.strategies.discrete.objectives import ACCURACY, Objectives
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
HISTORY = "history.jsonl"
PARETO = "pareto.jsonl"


class DiscreteRun(Run):
    """Runs (or resumes) a discrete search in ``run_dir``.

    Args:
        run_dir: the run directory.
        space: the search space (genotype text and JSON).
        data: the search split, handed to the evaluator (loaded only if it asks).
        strategy: builds the strategy: ``strategy(space=..., warm=...)`` (a partial from the config).
        evaluator: builds the evaluator: ``evaluator(space=..., data=..., context=...)`` (a partial from the config).
        benchmark: optional tabular benchmark reporting the best genotype's accuracies.
        context: the execution context (one process: a discrete search is not run under torchrun).
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
        warm_start: optional; ``warm_start(space=..., data=...)`` lists genotypes that the strategy's initial
            design draws before any uniform sample (e.g. the best of a pool by a zero-cost proxy).
        selection, hessian: a gradient search's; refused here unless they are the defaults (no supernet).
        constraint: upper bounds on the genotype's cost metrics (``{"flops": 20}``; None values: no bound).
        objectives: ``[accuracy]`` (the score alone) or with cost metrics (``[accuracy, flops]``: multi-objective).
        hypervolume_reference: the hypervolume's reference point by objective (default: accuracy 0, a cost metric
            its constraint's limit).
        cost: genotype -> its exact cost metrics (``params`` M, ``flops`` M MACs[, ``latency`` ms]); None: the
            space's cost model (``CostModel.measure``) for the evaluator's networks, if the space has one.
        cost_input_size: the image side the cost model counts at (CIFAR: 32).
        latency_table: a ``darts-latency`` table of the space, for the cost model's ``latency`` (None: no latency).
    """

    what = "the discrete search"

    def __init__(self, run_dir: str | Path, space: SearchSpace, data: SearchData,
                 strategy: Callable[..., DiscreteStrategy], evaluator: Callable[..., Evaluator] | None = None,
                 benchmark: TabularBenchmark | None = None, context: Context = Context(), hparams: dict[str, Any] | None = None, warm_start: Callable[..., list[Any]] | None = None,
                 selection: Selection | None = None, hessian: HessianMonitor | None = None,
                 constraint: Mapping[str, float | None] | None = None, objectives: Sequence[str] = (ACCURACY,),
                 hypervolume_reference: Mapping[str, float | None] | None = None, cost: Cost | None = None,
                 cost_input_size: int = 32, latency_table: str | None = None):
        if context.dist.world > 1:
            raise ValueError("a discrete search runs in one process, not under torchrun; its evaluator scores "
                             "candidates concurrently instead (evaluator.workers, one GPU each when several are visible)")
        if evaluator is None:
            raise ValueError("a discrete search scores its candidates with an evaluator: set evaluator=<name> "
                             "(darts-search --help lists them)")
        if latency_table is not None and not space.costed:
            raise ValueError(f"latency_table={latency_table}: {type(space).__name__} has no cost model")
        name, every = getattr(selection, "name", "argmax"), getattr(hessian, "every", 0)
        if (selection is not None and selection.gradient_only) or every:
            raise ValueError(f"selection={name} hessian.every={every}: a discrete search has no supernet to select "
                             "from or monitor; use selection=argmax hessian.every=0")
        super().__init__(run_dir, context, hparams=hparams)
        self.space, self.benchmark = space, benchmark
        self.evaluator = evaluator(space=space, data=data, context=context)
        cost = cost or self._cost_model(data, cost_input_size, latency_table)
        self.measure = None if cost is None else cached(cost, space.to_text)
        limits = Constraint(constraint, self.measure)
        reference = {**limits.limits, **{k: v for k, v in (hypervolume_reference or {}).items() if v is not None}}
        goals = Objectives(objectives, self.measure, reference)
        budget = {"constraint": limits, "objectives": goals} if limits or goals.multi else {}
        warm = [] if warm_start is None else list(warm_start(space=space, data=data))  # deterministic: a resumed
        self.strategy = strategy(space=space, warm=warm, **budget)  # run replays the same genotypes
        if self.strategy.multi_fidelity and not self.evaluator.takes_fidelity:
            raise ValueError(f"{type(self.strategy).__name__} asks for fidelities but {type(self.evaluator).__name__} "
                             "takes no fidelity; use evaluator=train (epochs) or evaluator=tabular (a table with "
                             "per-epoch validation columns)")
        self.records: list[dict[str, Any]] = []  # the history so far (read back when resuming)
        self.best: tuple[float, int, Any] | None = None  # score, index, genotype of the first best candidate
        self.cost = 0.0  # seconds of evaluation cost

    def _cost_model(self, data: SearchData, input_size: int, latency_table: str | None) -> Cost | None:
        """The space's exact cost of the evaluator's networks (with the latency table's latency), if it has a cost
        model and the run has networks to count (a table lookup: its dataset's; else the run's data)."""
        classes = self.evaluator.network_classes(data) if self.space.costed else None
        if classes is None:
            return None
        return cost_model(self.space, classes, input_size, latency_table).cost

    def state_dict(self) -> dict[str, Any]:
        """The evaluator's state (e.g. a trained supernet) and the strategy's (e.g. a swarm)."""
        return {"evaluator": self.evaluator.state_dict(), "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The evaluator's state and the history (``history.jsonl``, a line cut short by a kill dropped); the strategy
        is rebuilt by replaying the history."""
        self.evaluator.load_state_dict(state["evaluator"])
        self.records = self.dir.read_jsonl(HISTORY)
        if len(self.records) > self.strategy.budget:
            raise ValueError(f"{self.dir / HISTORY} holds {len(self.records)} evaluations, more than "
                             f"strategy.budget={self.strategy.budget}; resume with a budget of at least that")

    def save(self, epoch: int = 0) -> None:
        """Checkpoint the evaluator's and the strategy's state (a replay reproduces the random streams)."""
        self.dir.save_checkpoint(self.state_dict())

    def start(self, board: TensorBoardLog) -> None:
        """The history as read back (a new run's empty; the Pareto log is rebuilt by the replay), then the evaluator's
        preparation (supernet training)."""
        self.dir.rewrite_jsonl(HISTORY, self.records)
        if self.strategy.objectives.multi:
            self.dir.rewrite_jsonl(PARETO, [])
        self.evaluator.prepare(on_epoch=partial(self._prepare_epoch, board))
        self.save()

    def loop(self, board: TensorBoardLog) -> None:
        """Generations until the budget is spent."""
        self._search(board)

    def _search(self, board: TensorBoardLog) -> None:
        start = time.time() - (self.records[-1]["elapsed"] if self.records else 0.0)
        bar = tqdm(total=self.strategy.budget, initial=len(self.records), desc="evaluations",
                   disable=not self.context.bars, dynamic_ncols=True)
        index = 0
        while not self.strategy.done:
            genotypes = self.strategy.ask()
            told = self._replay(genotypes, index)
            fresh = list(enumerate(genotypes, start=index))[len(told):]
            scored = self.evaluator.evaluate_all(fresh, self.strategy.fidelity)  # a generation shares one fidelity
            for (i, genotype), (result, seconds) in zip(fresh, scored):
                record = self._record(i, genotype, result, seconds, time.time() - start)
                self.dir.append_jsonl(HISTORY, record)
                self._log(board, record, start)
                told.append((result.score, result.cost))
                bar.update()
            self.strategy.tell([score for score, _ in told], [cost for _, cost in told])
            index += len(genotypes)
            budget = self._after_generation(index)
            if fresh:  # a replayed generation was logged and checkpointed before the interruption
                board.scalars("strategy", self.strategy.scalars(), index)
                board.scalars("budget", budget, index)
                board.flush()
                self.save()
        bar.close()

    def _after_generation(self, evaluations: int) -> dict[str, float]:
        """After a generation: with cost objectives, its line of ``pareto.jsonl``; the rejections and hypervolume."""
        scalars = {"rejected": float(self.strategy.constraint.rejected)} if self.strategy.constraint else {}
        if self.strategy.objectives.multi:
            front = self._front()
            self.dir.append_jsonl(PARETO, {"evaluations": evaluations, **front})
            scalars["hypervolume"] = front["hypervolume"]
        return scalars

    def _front(self) -> dict[str, Any]:
        """The Pareto front of the evaluations so far (genotype text and objective values) and its hypervolume."""
        front = self.strategy.front()
        return {"pareto_front": [{"genotype": self.space.to_text(g), **self.strategy.objectives.values(g, s)}
                                 for g, s in front],
                "hypervolume": self.strategy.objectives.hypervolume(front)}

    def _replay(self, genotypes: list[Any], index: int) -> list[tuple[float, float]]:
        """(score, cost) of this generation's candidates already in the history (checked to be the same genotypes at
        the same fidelity; a history written before fidelities were recorded has the default, None)."""
        told, fidelity = [], self.strategy.fidelity
        for i, (genotype, record) in enumerate(zip(genotypes, self.records[index:]), start=index):
            text = self.space.to_text(genotype)
            if (record["genotype"], record.get("fidelity")) != (text, fidelity):
                raise ValueError(f"{self.dir / HISTORY} does not match this run: candidate {i} is {record['genotype']} "
                                 f"at fidelity {record.get('fidelity')} there but {text} at fidelity {fidelity} on "
                                 "replay (seed, strategy or space changed?)")
            self._track(i, genotype, record["score"], record["cost"], fidelity)
            told.append((record["score"], record["cost"]))
        return told

    def _track(self, index: int, genotype: Any, score: float, cost: float, fidelity: Any) -> None:
        """Update the best candidate (the first of highest score among the final fidelity's) and the total cost."""
        if self.strategy.final(fidelity) and (self.best is None or score > self.best[0]):
            self.best = (score, index, genotype)
        self.cost += cost

    def _record(self, index: int, genotype: Any, result: Evaluation, seconds: float, elapsed: float) -> dict:
        fidelity = self.strategy.fidelity
        self._track(index, genotype, result.score, result.cost, fidelity)
        record = {"index": index, "genotype": self.space.to_text(genotype), "fidelity": fidelity,
                  "score": result.score, "cost": result.cost, "time": seconds, "elapsed": elapsed, **result.metrics}
        if self.measure is not None:
            record["genotype_cost"] = dict(self.measure(genotype))
        self.records.append(record)
        log.info("[%d/%d] score %.2f%s (best %s) cost %.1fs %s", index + 1, self.strategy.budget, result.score,
                 "" if fidelity is None else f" at fidelity {fidelity}",
                 "none yet" if self.best is None else f"{self.best[0]:.2f}", result.cost, record["genotype"])
        return record

    def _log(self, board: TensorBoardLog, record: dict[str, Any], start: float) -> None:
        """Per candidate: its score and cost, the best score (at a final fidelity) against evaluations and against
        seconds; per new best genotype: its text and benchmark accuracies."""
        n = record["index"] + 1
        board.scalars("search", {"score": record["score"], "cost": record["cost"]}, n)
        if self.best is None:  # no candidate has reached the final fidelity yet
            return
        best = self.best[0]
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
        self.save()
        log.info("supernet epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _report(self, genotype: Any) -> dict[str, float]:
        """The benchmark's accuracies of ``genotype`` (the benchmark, else what the evaluator knows)."""
        return self.benchmark.query(genotype) if self.benchmark is not None else self.evaluator.report(genotype)

    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """The best candidate at a final fidelity, with its score, cost and benchmark accuracies."""
        if self.best is None:
            raise RuntimeError(f"no candidate was evaluated at the final fidelity within the budget "
                               f"({len(self.records)} evaluations, {self.cost:.0f} s); resume with a larger "
                               "strategy.budget or strategy.time_budget")
        score, index, genotype = self.best
        text = self.dir.write_genotype(self.space, genotype)
        result = {"genotype": text, "genotype_json": self.space.to_json(genotype), "score": score,
                  "fidelity": self.records[index].get("fidelity"), "best_index": index,
                  "evaluations": len(self.records), "budget": self.strategy.budget,
                  "evaluation_cost": self.cost, "elapsed": self.records[-1]["elapsed"]}
        if self.measure is not None:
            result["cost"] = dict(self.measure(genotype))
        if self.strategy.constraint:
            result["rejected"] = self.strategy.constraint.rejected
        if (goals := self.strategy.objectives).multi:
            result.update(objectives=list(goals.names), hypervolume_reference=goals.reference, **self._front())
        report = self._report(genotype)
        if report:
            result["benchmark"] = report
        board.cells("search/diagram", self.space.cell_graphs(genotype), len(self.records))
        log.info("best of %d evaluations: score %.2f (candidate %d) %s%s", len(self.records), score, index, text,
                 f"; benchmark {report}" if report else "")
        return result

    def summary(self, result: dict[str, Any]) -> dict[str, float]:
        """Score, evaluation cost (s), the hypervolume (cost objectives) and the benchmark's accuracies."""
        return {"score": result["score"], "evaluation_cost": result["evaluation_cost"],
                **{k: result[k] for k in ("hypervolume",) if k in result},
                **{f"benchmark/{k}": v for k, v in result.get("benchmark", {}).items()}}
