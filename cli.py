"""Plumbing shared by the entry points train_search.py and train_final.py (the only Hydra users)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from darts.runtime import find_resume_dir


def register_run_dir(resolver: str, outputs: str, marker: str) -> None:
    """``${<resolver>:${resume},<default dir>}``: the run to resume (a path, or ``true`` for the newest
    unfinished run under ``outputs``), else the default new run directory."""
    OmegaConf.register_new_resolver(
        resolver, lambda resume, default: str(find_resume_dir(resume, outputs, marker) or default), replace=True)


def run_config(cfg: DictConfig, may_change: Callable[[str, DictConfig], bool], rule: str) -> tuple[DictConfig, Path]:
    """The run directory and its configuration: saved resolved for a new run; for a resumed run the saved
    one, with the command-line overrides that ``may_change(key, saved)`` allows (else ValueError with ``rule``)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    saved = run_dir / "config.yaml"
    if cfg.resume and saved.is_file():
        return resumed_config(OmegaConf.load(saved), HydraConfig.get().overrides.task, may_change, rule), run_dir
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ValueError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    OmegaConf.save(cfg, saved, resolve=True)
    return cfg, run_dir


def resumed_config(saved: DictConfig, overrides: list[str], may_change: Callable[[str, DictConfig], bool],
                   rule: str) -> DictConfig:
    """The saved configuration with the allowed overrides applied; any other override is refused."""
    cfg = saved.copy()
    for item in overrides:
        item = item.lstrip("+~")
        key = item.partition("=")[0]
        if key != "resume" and not may_change(key, saved):
            raise ValueError(f"cannot override {key!r} when resuming: {rule}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    return cfg


def plain_value(key: str, saved: DictConfig) -> bool:
    """True when ``key`` holds a plain value (number, string, bool) in the saved configuration."""
    return isinstance(OmegaConf.select(saved, key, default=None), (int, float, str, bool))
