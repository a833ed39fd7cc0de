"""``darts-search`` (``python train_search.py`` from a clone): search for a cell, ``key=value`` overrides of
``conf/search.yaml``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from darts.app.config import CONF, check_arguments, hparams, rank_device, run_config
from darts.app.errors import reporting
from darts.app.rundir import register_run_dir
from darts.context import configure_backends, pick_device, seed_everything
from darts.data.search_split import SearchData
from darts.distributed import SINGLE, Distributed, from_environment

log = logging.getLogger("train_search")
OUTPUTS = "outputs"
register_run_dir("run_dir", OUTPUTS)


def build(cfg: DictConfig, run_dir: Path, dist: Distributed = SINGLE):
    """The run the config describes, in ``run_dir`` (resumed if the config asks).

    The run kind comes from the strategy's config (``conf/run/gradient.yaml`` or ``discrete.yaml``); the dataset
    is loaded only if the run asks for it, so a tabular lookup reads no images.
    """
    seed_everything(cfg.seed)
    space = instantiate(cfg.search_space)
    # partials, called here and by the run: their errors (e.g. no CIFAR-10) reach the user unwrapped
    data = SearchData(instantiate(cfg.dataset, _partial_=True), cfg.train_portion, cfg.seed, pick_device(cfg.device),
                      dist)
    benchmark = instantiate(cfg.benchmark, _partial_=True)(space=space) if cfg.benchmark.path else None
    if "selection" in cfg and "selection" not in cfg.run:  # a discrete run (conf/run/discrete.yaml)
        selection = get_object(cfg.selection._target_)
        if selection.gradient_only or cfg.hessian.every:
            raise ValueError(f"selection={selection.name} hessian.every={cfg.hessian.every}: a discrete search has no "
                             "supernet to select from or monitor; use selection=argmax hessian.every=0")
    make_run = instantiate(cfg.run, _partial_=True)
    run = make_run(run_dir=run_dir, space=space, data=data, benchmark=benchmark, hparams=hparams(cfg), dist=dist,
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
    dist = from_environment()
    cfg, run_dir = run_config(cfg, dist)
    cfg.device = rank_device(cfg.device, dist)
    configure_backends(cfg.precision, cfg.deterministic)
    result = search(cfg, run_dir, dist)
    log.info("result: %s", run_dir / "result.json")
    log.info("genotype: %s", result["genotype"])


def main() -> None:
    """The ``darts-search`` command: check the arguments, then run Hydra's application."""
    check_arguments(sys.argv[1:], OUTPUTS)
    _main()


if __name__ == "__main__":
    main()
