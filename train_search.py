"""Search for a cell: ``python train_search.py [key=value ...]`` (see conf/search.yaml and README)."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from cli import plain_value, register_run_dir, run_config
from darts.data import search_split
from darts.discrete import DiscreteRun
from darts.evaluators import SearchData
from darts.runtime import pick_device, seed_everything
from darts.search import CHECKPOINT, SearchRun, SearchSettings

log = logging.getLogger("train_search")
register_run_dir("run_dir", "outputs", CHECKPOINT)


def build_run(cfg: DictConfig, run_dir: Path) -> SearchRun:
    """Instantiate data, space, supernet, strategy and benchmark from the config."""
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data = instantiate(cfg.dataset)
    space = instantiate(cfg.search_space)
    supernet = space.build_supernet(data.num_classes).to(device)
    strategy = instantiate(cfg.strategy, supernet=supernet, space=space)
    weight_idx, arch_idx = search_split(len(data.train), cfg.train_portion, cfg.seed)
    # DARTS train_search.py: both halves use the training augmentation
    train_loader = data.train.loader(cfg.batch_size, device, train=True, seed=cfg.seed, indices=weight_idx)
    valid_loader = data.train.loader(cfg.batch_size, device, train=True, seed=cfg.seed + 1, indices=arch_idx)
    benchmark = instantiate(cfg.benchmark) if cfg.benchmark.path else None
    settings = SearchSettings(epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch, progress=cfg.progress,
                              precision=cfg.precision, channels_last=cfg.channels_last, fast=cfg.fast,
                              compile=cfg.compile, **cfg.optimizer)
    return SearchRun(run_dir, space, strategy, train_loader, valid_loader, settings, device, benchmark)


def build_discrete_run(cfg: DictConfig, run_dir: Path) -> DiscreteRun:
    """Instantiate space, evaluator, strategy and the `run` node of a discrete search (strategy=random|evolution).

    The dataset is loaded only if the evaluator asks `data` for it, so a tabular run reads no images.
    """
    seed_everything(cfg.seed)
    space = instantiate(cfg.search_space)
    data = SearchData(lambda: instantiate(cfg.dataset), cfg.train_portion, cfg.seed, pick_device(cfg.device))
    evaluator = instantiate(cfg.evaluator, space=space, data=data)
    strategy = instantiate(cfg.strategy, space=space)
    benchmark = instantiate(cfg.benchmark) if cfg.benchmark.path else None
    return instantiate(cfg.run, run_dir=run_dir, space=space, strategy=strategy, evaluator=evaluator,
                       benchmark=benchmark)


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
def main(cfg: DictConfig) -> None:
    """Compose the config, then search (or resume) in the run directory."""
    cfg, run_dir = run_config(cfg, plain_value, "a resumed run keeps its configuration; only plain values "
                                                "such as epochs=... may change")
    # discrete strategies (conf/strategy/random.yaml, evolution.yaml) add a `run` node; the default is gradient-based
    run = build_discrete_run(cfg, run_dir) if "run" in cfg else build_run(cfg, run_dir)
    if cfg.resume:
        run.resume()
    result = run.run()
    log.info("result: %s", run_dir / "result.json")
    log.info("genotype: %s", result["genotype"])


if __name__ == "__main__":
    main()
