"""``darts-retrain`` (``python train_final.py`` from a clone): retrain a cell from scratch, ``key=value`` overrides of
``conf/final.yaml`` (e.g. ``genotype=DARTS_V2``)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from darts.app.config import CONF, check_arguments, hparams, rank_device, run_config
from darts.app.errors import reporting
from darts.app.rundir import register_run_dir
from darts.context import Runtime, configure_backends, seed_everything
from darts.distributed import SINGLE, Distributed, from_environment
from darts.runs.distillation import from_settings as distillation
from darts.runs.final import FinalRun, FinalSettings
from darts.runs.network_spec import NetworkSpec, holdout_split
from darts.runs.reader import resolve_genotype

log = logging.getLogger("train_final")
OUTPUTS = "outputs/final"  # apart from searches: resume=true never picks a search run
register_run_dir("final_run_dir", OUTPUTS)


def build_run(cfg: DictConfig, run_dir: Path, dist: Distributed = SINGLE) -> FinalRun:
    """Instantiate the space, the genotype, the data, the teacher (if any), the network spec, the loaders and the
    recipe from the config."""
    space = instantiate(cfg.search_space)
    genotype = resolve_genotype(cfg.genotype, space)  # fail on a bad genotype before reading any data
    settings = FinalSettings(epochs=cfg.epochs, auxiliary_weight=cfg.auxiliary_weight,
                             drop_path_prob=cfg.drop_path_prob, label_smoothing=cfg.label_smoothing,
                             steps_per_epoch=cfg.steps_per_epoch, progress=cfg.progress, **cfg.optimizer)
    runtime = Runtime.of(cfg.device, cfg.precision, cfg.channels_last)
    seed_everything(cfg.seed)
    data = instantiate(cfg.dataset, _partial_=True)()  # called here: a missing dataset is reported unwrapped
    distill = distillation(data.num_classes, **cfg.get("distill", {}))  # None without a teacher (or a distill block)
    spec = NetworkSpec(instantiate(cfg.model.network), genotype, space, data.num_classes,
                       auxiliary=cfg.auxiliary_weight > 0)
    train_idx, valid_idx = holdout_split(len(data.train), cfg.valid_portion, cfg.seed)
    train_idx = dist.shard(torch.arange(len(data.train)) if train_idx is None else train_idx)  # each rank its share
    device = runtime.device
    train = data.train.loader(cfg.batch_size, device, train=True, cutout=cfg.cutout, seed=cfg.seed, indices=train_idx)
    valid = None if valid_idx is None else data.train.loader(cfg.batch_size, device, train=False,
                                                              indices=dist.shard(valid_idx))
    test = data.test.loader(cfg.batch_size, device, train=False, indices=dist.shard(torch.arange(len(data.test))))
    return FinalRun(run_dir, spec, train, test, settings, instantiate(cfg.scheduler), runtime, valid, hparams(cfg),
                    dist, cfg.sync_bn, distill)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="final")
@reporting
def _main(cfg: DictConfig) -> None:
    """Compose the config, then retrain (or resume) in the run directory; under torchrun, on every rank."""
    dist = from_environment()
    cfg, run_dir = run_config(cfg, dist)
    cfg.device = rank_device(cfg.device, dist)
    configure_backends(cfg.precision, cfg.deterministic)
    run = build_run(cfg, run_dir, dist)
    if cfg.resume:
        run.resume()
    result = run.run()
    log.info("result: %s", run_dir / "result.json")
    log.info("test accuracy %.2f%%, %.3fM params, %.1fM mult-adds", result["test_accuracy"], result["params"],
             result["madds"] / 1e6)


def main() -> None:
    """The ``darts-retrain`` command: check the arguments, then run Hydra's application."""
    check_arguments(sys.argv[1:], OUTPUTS)
    _main()


if __name__ == "__main__":
    main()
