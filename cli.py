"""Plumbing shared by the entry points train_search.py and train_final.py (the only Hydra users).

A run directory holds its configuration twice: ``config.yaml``, fully resolved (what ran, for reading and
comparing), and ``composed.yaml``, as composed with its interpolations (``run.epochs: ${epochs}``), which
a resumed run reads so that an allowed override reaches every value derived from it.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from darts.runs.directory import CHECKPOINT, CONFIG, find_resume_dir

COMPOSED = "composed.yaml"
# One resume rule for both entry points: a resumed run may change only what alters neither the model, the data,
# the seed nor the part of the schedule already run: a longer schedule or budget, and how it runs.
RESUMABLE = ("epochs", "strategy.budget", "strategy.time_budget", "device", "progress", "precision",
             "channels_last", "fast", "compile", "evaluator.workers")


def register_run_dir(resolver: str, outputs: str) -> None:
    """``${<resolver>:${resume},<default dir>}``: the run to resume (a path, or ``true`` for the newest
    unfinished run under ``outputs``), else the default new run directory."""
    OmegaConf.register_new_resolver(
        resolver, lambda resume, default: str(find_resume_dir(resume, outputs, CHECKPOINT) or default), replace=True)


def run_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The run directory and its configuration, saved there: the composed one for a new run; for a resumed run
    the saved one with the command-line overrides that ``RESUMABLE`` allows (any other: ValueError)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    saved = next((run_dir / name for name in (COMPOSED, CONFIG) if (run_dir / name).is_file()), None)
    if cfg.resume and saved is not None:  # CONFIG alone: a run directory from before composed.yaml existed
        cfg = resumed_config(OmegaConf.load(saved), HydraConfig.get().overrides.task)
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ValueError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    OmegaConf.save(cfg, run_dir / COMPOSED)
    OmegaConf.save(cfg, run_dir / CONFIG, resolve=True)
    return cfg, run_dir


def resumed_config(saved: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved configuration with the allowed overrides applied; any other override is refused."""
    cfg = saved.copy()
    for item in overrides:
        item = item.lstrip("+~")
        key = item.partition("=")[0]
        if key not in ("resume", *RESUMABLE):
            raise ValueError(f"cannot change {key!r} when resuming: a resumed run keeps its model, data, seed and the "
                             f"schedule it has run; only {', '.join(RESUMABLE)} may change")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    return cfg
