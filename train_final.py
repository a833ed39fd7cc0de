"""Retrain a cell from scratch: ``python train_final.py genotype=DARTS_V2 [key=value ...]`` (conf/final.yaml)."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

import cli
from darts.final import CHECKPOINT, FinalRun, FinalSettings, NetworkSpec, holdout_split, resolve_genotype
from darts.runtime import pick_device, seed_everything

log = logging.getLogger("train_final")
OUTPUTS = "outputs/final"  # apart from search runs, so that resume=true never picks a search run
# what may change when resuming: the recipe's schedules (cosine T_max, drop path) are fixed by the saved epochs
RUNTIME_KEYS = ("resume", "device", "progress", "precision", "channels_last")
RULE = f"a resumed retraining keeps its configuration (only {', '.join(RUNTIME_KEYS)} may change)"
cli.register_run_dir("final_run_dir", OUTPUTS, CHECKPOINT)


def build_run(cfg: DictConfig, run_dir: Path) -> FinalRun:
    """Instantiate the data, the network spec, the loaders and the schedule from the config."""
    genotype = resolve_genotype(cfg.genotype)  # fail on a bad genotype before reading any data
    settings = FinalSettings(epochs=cfg.epochs, auxiliary_weight=cfg.auxiliary_weight,
                             drop_path_prob=cfg.drop_path_prob, label_smoothing=cfg.label_smoothing,
                             steps_per_epoch=cfg.steps_per_epoch, progress=cfg.progress, precision=cfg.precision,
                             channels_last=cfg.channels_last, **cfg.optimizer)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data = instantiate(cfg.dataset)
    spec = NetworkSpec(get_class(cfg.model.network), genotype, cfg.model.init_channels, cfg.model.layers,
                       data.num_classes, auxiliary=cfg.auxiliary_weight > 0)
    train_idx, valid_idx = holdout_split(len(data.train), cfg.valid_portion, cfg.seed)
    train = data.train.loader(cfg.batch_size, device, train=True, cutout=cfg.cutout, seed=cfg.seed, indices=train_idx)
    valid = None if valid_idx is None else data.train.loader(cfg.batch_size, device, train=False, indices=valid_idx)
    test = data.test.loader(cfg.batch_size, device, train=False)
    return FinalRun(run_dir, spec, train, test, settings, instantiate(cfg.scheduler), device, valid)


def resumed_config(saved: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved configuration of the run being resumed, with only runtime keys (RUNTIME_KEYS) overridden."""
    return cli.resumed_config(saved, overrides, runtime_key, RULE)


def runtime_key(key: str, saved: DictConfig) -> bool:
    """Whether ``key`` may change when resuming."""
    return key in RUNTIME_KEYS


@hydra.main(version_base="1.3", config_path="conf", config_name="final")
def main(cfg: DictConfig) -> None:
    """Compose the config, then retrain (or resume) in the run directory."""
    cfg, run_dir = cli.run_config(cfg, runtime_key, RULE)
    run = build_run(cfg, run_dir)
    if cfg.resume:
        run.resume()
    result = run.run()
    log.info("result: %s", run_dir / "result.json")
    log.info("test accuracy %.2f%%, %.3fM params, %.1fM mult-adds", result["test_accuracy"], result["params"],
             result["madds"] / 1e6)


if __name__ == "__main__":
    main()
