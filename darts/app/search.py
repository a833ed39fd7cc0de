"""``darts-search`` (``python train_search.py`` from a clone): search for a cell, ``key=value`` overrides of
``conf/search.yaml``. The strategy's class decides the run kind: a gradient ``Strategy`` runs a bilevel search
(``SearchRun``), a ``DiscreteStrategy`` asks an evaluator (``DiscreteRun``)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from darts.app.arguments import prepare
from darts.app.config import CONF, hparams, hypergradient, running
from darts.app.errors import reporting
from darts.app.rundir import register_run_dir
from darts.context import Context, seed_everything
from darts.cost.budget import Budget
from darts.data.search_split import SearchData
from darts.distributed import SINGLE, Distributed
from darts.runs.base import Run
from darts.runs.discrete import DiscreteRun
from darts.runs.search import SearchRun
from darts.settings import SGD, integer
from darts.strategies.base import Strategy
from darts.strategies.discrete.base import DiscreteStrategy
from darts.tuning.trial import PRUNED

log = logging.getLogger("train_search")
OUTPUTS = "outputs"
register_run_dir("run_dir", OUTPUTS)


def context(cfg: DictConfig, dist: Distributed = SINGLE) -> Context:
    """The run's execution context from its settings."""
    return Context.of(cfg.device, cfg.precision, cfg.channels_last, cfg.fast, cfg.compile, dist, cfg.progress,
                      cfg.memory.checkpoint)


def gradient_run(cfg: DictConfig, **common) -> SearchRun:
    """A gradient search with the configuration's loop, optimizer, selection and Hessian monitor."""
    return SearchRun(**common, epochs=cfg.epochs, batch_size=cfg.batch_size, steps_per_epoch=cfg.steps_per_epoch,
                     seed=cfg.seed, optimizer=SGD(**cfg.optimizer), selection=instantiate(cfg.selection),
                     hessian=instantiate(cfg.hessian), budget=budget(cfg), cost_input_size=cfg.cost_input_size,
                     latency_table=cfg.latency_table, hypergradient=hypergradient(cfg))


def budget(cfg: DictConfig) -> Budget | None:
    """The cost target of ``cost=<penalty>`` (None without one); ValueError for a discrete search's settings."""
    limits = [f"constraint.{k}={v}" for k, v in cfg.constraint.items() if v is not None]
    if limits or list(cfg.objectives) != ["accuracy"]:
        raise ValueError(f"{' '.join(limits) or f'objectives={list(cfg.objectives)}'} is for a discrete search "
                         "(strategy=random|evolution|bo|pso); a gradient search takes cost=<penalty> "
                         "cost.metric=<metric> cost.target=<budget>")
    return None if cfg.get("cost") is None else instantiate(cfg.cost)


def discrete_run(cfg: DictConfig, **common) -> DiscreteRun:
    """A discrete search with the configuration's evaluator, warm start, constraint and objectives."""
    method = hypergradient(cfg)
    if method is not None:
        raise ValueError(f"hypergradient={method.name} steps a gradient search's weight optimizer; a discrete search "
                         "trains no supernet: hypergradient=none")
    if cfg.get("cost") is not None:
        raise ValueError(f"cost={cfg.cost.penalty._target_.rsplit('.', 1)[-1]} penalises a gradient search's arch "
                         "loss; a discrete search never evaluates what is over a budget: constraint.<metric>=<max>")
    evaluator, warm_start = cfg.get("evaluator"), cfg.get("warm_start")
    budget = {key: OmegaConf.to_container(cfg[key]) for key in ("constraint", "objectives", "hypervolume_reference")
              if cfg.get(key) is not None}  # a run resumed from an older config has none
    return DiscreteRun(**common, evaluator=None if evaluator is None else instantiate(evaluator, _partial_=True),
                       warm_start=None if warm_start is None else instantiate(warm_start, _partial_=True),
                       selection=instantiate(cfg.selection), hessian=instantiate(cfg.hessian),
                       cost_input_size=cfg.get("cost_input_size", 32), latency_table=cfg.get("latency_table"),
                       **budget)


RUN_KINDS = ((DiscreteStrategy, discrete_run), (Strategy, gradient_run))  # the strategy's base class -> its run


def build(cfg: DictConfig, run_dir: Path, dist: Distributed = SINGLE) -> Run:
    """The run the config describes, in ``run_dir`` (resumed if the config asks); the dataset is loaded only if the
    run asks for it, so a tabular lookup reads no images."""
    integer("seed", cfg.seed, 0)
    seed_everything(cfg.seed)
    ctx = context(cfg, dist)
    space = instantiate(cfg.search_space, **cfg.model)
    # partials, called by the run: their errors (e.g. no CIFAR-10) reach the user unwrapped
    data = SearchData(instantiate(cfg.dataset, _partial_=True), cfg.train_portion, cfg.seed, ctx)
    benchmark = instantiate(cfg.benchmark, _partial_=True)(space=space) if cfg.benchmark.path else None
    kind = get_object(cfg.strategy._target_)
    make = next((make for base, make in RUN_KINDS if isinstance(kind, type) and issubclass(kind, base)), None)
    if make is None:
        raise ValueError(f"strategy._target_={cfg.strategy._target_!r} is neither a darts.strategies.base.Strategy "
                         "nor a darts.strategies.discrete.base.DiscreteStrategy")
    run = make(cfg, run_dir=run_dir, space=space, data=data, context=ctx, benchmark=benchmark, hparams=hparams(cfg),
               strategy=instantiate(cfg.strategy, _partial_=True))
    if cfg.resume:
        run.resume()
    return run


def search(cfg: DictConfig, run_dir: Path, dist: Distributed = SINGLE) -> dict:
    """Build the run the config describes in ``run_dir``, resume it if asked, run it; returns its result."""
    return build(cfg, run_dir, dist).run()


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="search")
@reporting
def _main(cfg: DictConfig) -> None:
    """Compose the config, then search (or resume) in the run directory; under torchrun, on every rank."""
    with running(cfg) as (cfg, run_dir, dist):
        result = search(cfg, run_dir, dist)
    log.info("result: %s", run_dir / "result.json")
    if result.get("status") != PRUNED:  # a tuning trial the study stopped early has no genotype
        log.info("genotype: %s", result["genotype"])


def main() -> None:
    """The ``darts-search`` command: check the arguments, then run Hydra's application."""
    sys.argv[1:] = prepare(sys.argv[1:], OUTPUTS, "search")
    _main()


if __name__ == "__main__":
    main()
