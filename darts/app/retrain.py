"""``darts-retrain`` (``python train_final.py`` from a clone): retrain a cell from scratch, ``key=value`` overrides of
``conf/final.yaml`` (e.g. ``genotype=DARTS_V2``)."""
from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from darts.app.arguments import prepare
from darts.app.config import CONF, hparams, hypergradient, running
from darts.app.errors import reporting
from darts.app.rundir import register_run_dir
from darts.context import Context, seed_everything
from darts.distributed import SINGLE, Distributed
from darts.runs.distillation import from_settings as distillation
from darts.runs.final import FinalRun, FinalSettings
from darts.runs.network_spec import NetworkSpec, holdout_split
from darts.runs.reader import resolve_genotype
from darts.settings import SGD, integer
from darts.tuning.trial import PRUNED

log = logging.getLogger("train_final")
RETRAIN_CHECKPOINTS = ("none", "cells")  # a retraining network has no mixed ops (no `norms`)
OUTPUTS = "outputs/final"  # apart from searches: resume=true never picks a search run
register_run_dir("final_run_dir", OUTPUTS)


def build_run(cfg: DictConfig, run_dir: Path, dist: Distributed = SINGLE) -> FinalRun:
    """Instantiate the space, the genotype, the recipe, the data, the teacher (if any), the network spec and the
    loaders from the config."""
    space = instantiate(cfg.search_space, **cfg.model)
    genotype = resolve_genotype(cfg.genotype, space)  # fail on a bad genotype before reading any data
    settings = FinalSettings(epochs=cfg.epochs, optimizer=SGD(**cfg.optimizer), auxiliary_weight=cfg.auxiliary_weight,
                             drop_path_prob=cfg.drop_path_prob, label_smoothing=cfg.label_smoothing,
                             steps_per_epoch=cfg.steps_per_epoch)
    integer("seed", cfg.seed, 0)
    integer("batch_size", cfg.batch_size, 1)
    integer("cutout", cfg.cutout, 0)
    if cfg.memory.checkpoint not in RETRAIN_CHECKPOINTS:
        raise ValueError(f"memory.checkpoint={cfg.memory.checkpoint!r} is not valid for a retraining; choose one of "
                         f"{', '.join(RETRAIN_CHECKPOINTS)}")
    context = Context.of(cfg.device, cfg.precision, cfg.channels_last, dist=dist, progress=cfg.progress,
                         checkpoint=cfg.memory.checkpoint)
    seed_everything(cfg.seed)
    data = instantiate(cfg.dataset, _partial_=True)()  # called here: a missing dataset is reported unwrapped
    distill = distillation(data.num_classes, **cfg.get("distill", {}))  # None without a teacher (or a distill block)
    network = partial(get_object(cfg.network._target_), **space.network_sizes())  # the recipe's at the space's size
    spec = NetworkSpec(network, genotype, space, data.num_classes, auxiliary=cfg.auxiliary_weight > 0)
    train_idx, valid_idx = holdout_split(len(data.train), cfg.valid_portion, cfg.seed)
    train_idx = dist.shard(torch.arange(len(data.train)) if train_idx is None else train_idx)  # each rank its share
    device = context.device
    train = data.train.loader(cfg.batch_size, device, train=True, cutout=cfg.cutout, seed=cfg.seed, indices=train_idx)
    valid = None if valid_idx is None else data.train.loader(cfg.batch_size, device, train=False,
                                                              indices=dist.shard(valid_idx))
    test = data.test.loader(cfg.batch_size, device, train=False, indices=dist.shard(torch.arange(len(data.test))))
    return FinalRun(run_dir, spec, train, test, settings, instantiate(cfg.scheduler), context, valid, hparams(cfg),
                    cfg.sync_bn, distill, hypergradient(cfg))


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="final")
@reporting
def _main(cfg: DictConfig) -> None:
    """Compose the config, then retrain (or resume) in the run directory; under torchrun, on every rank."""
    with running(cfg) as (cfg, run_dir, dist):
        run = build_run(cfg, run_dir, dist)
        if cfg.resume:
            run.resume()
        result = run.run()
    log.info("result: %s", run_dir / "result.json")
    if result.get("status") != PRUNED:  # a tuning trial the study stopped early has no test accuracy
        log.info("test accuracy %.2f%%, %.3fM params, %.1fM FLOPs", result["test_accuracy"], result["params"],
                 result["cost"]["flops"])


def main() -> None:
    """The ``darts-retrain`` command: check the arguments, then run Hydra's application."""
    sys.argv[1:] = prepare(sys.argv[1:], OUTPUTS, "final")
    _main()


if __name__ == "__main__":
    main()
