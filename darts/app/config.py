"""The configuration of a run: composed by Hydra, saved in the run directory, and merged on resume.

A run directory holds it twice: ``config.yaml``, fully resolved (what ran, for reading and comparing), and
``composed.yaml``, as composed with its interpolations, which a resumed run reads so that an allowed override
reaches every value derived from it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from darts.app import plugins
from darts.app.rundir import swept_keys
from darts.context import configure_backends
from darts.distributed import SINGLE, Distributed, from_environment
from darts.hypergradients.base import Hypergradient
from darts.runs import lock
from darts.runs.directory import CHECKPOINT, CONFIG
from darts.tuning.trial import VARIABLE as TRIAL

CONF = plugins.CONF
COMPOSED = "composed.yaml"
OVERRIDES = "overrides.yaml"  # the command-line overrides the run was started with
# One resume rule for both entry points: a resumed run may change only what alters neither the model, the data,
# the seed nor the part of the schedule already run: a longer schedule or budget, and how it runs.
RESUMABLE = ("epochs", "strategy.budget", "strategy.time_budget", "device", "progress", "precision",
             "channels_last", "fast", "compile", "deterministic", "evaluator.workers")


def rank_device(device: str, dist: Distributed) -> str:
    """Under torchrun with CUDA, each rank's own GPU (``cuda:LOCAL_RANK``) for ``device=auto`` or ``cuda``."""
    if dist.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"  # set from LOCAL_RANK by darts.distributed.from_environment
    return device


def spread_device(device: str, job: int, gpus: int, multirun: bool) -> str:
    """``device=auto`` for sweep job ``job`` when several GPUs are visible: ``cuda:(job mod gpus)``, so that jobs a
    parallel launcher runs at once (hydra/launcher=local_parallel) use different GPUs; any other case unchanged."""
    return f"cuda:{job % gpus}" if device == "auto" and multirun and gpus > 1 else device


@contextmanager
def run_directory(cfg: DictConfig, dist: Distributed = SINGLE) -> Iterator[tuple[DictConfig, Path]]:
    """The run directory, locked by rank 0 for the duration (``darts.runs.lock``: a second process on it stops with
    one line naming the holder), and the run's configuration, saved there (``run_config``)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with lock.locked(run_dir) if dist.main else nullcontext():
        yield run_config(cfg, dist)


@contextmanager
def running(cfg: DictConfig) -> Iterator[tuple[DictConfig, Path, Distributed]]:
    """What every command's run starts with: its ranks (torchrun), its directory (locked, ``run_directory``) and
    configuration, each rank's device, and the process-wide numerics (``configure_backends``)."""
    dist = from_environment()
    with run_directory(cfg, dist) as (cfg, run_dir):
        cfg.device = rank_device(cfg.device, dist)
        configure_backends(cfg.precision, cfg.deterministic)
        yield cfg, run_dir, dist


def run_config(cfg: DictConfig, dist: Distributed = SINGLE) -> tuple[DictConfig, Path]:
    """The run directory and its configuration, checked and saved there by rank 0 (``_run_config``); the other ranks
    of a torchrun job read what rank 0 saved (or stop with its error)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if dist.main:
        try:
            result = _run_config(cfg)
        except ValueError as err:
            dist.share(str(err))
            raise
        dist.share(None)
        return result
    error = dist.share(None)
    if error is not None:
        raise ValueError(error)
    return OmegaConf.load(run_dir / COMPOSED), run_dir


def _run_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The run directory and its configuration, checked and saved there: the composed one for a new run (in a
    directory that holds no run yet); for a resumed run the saved one with the command-line overrides that
    ``RESUMABLE`` allows (any other: ValueError)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    saved = next((run_dir / name for name in (COMPOSED, CONFIG) if (run_dir / name).is_file()), None)
    overrides = list(HydraConfig.get().overrides.task)
    rerun = saved is not None and not cfg.resume and bool(os.environ.get(TRIAL))  # a trial an interrupted sweep
    if rerun:                                                                    # runs again: continue it
        cfg.resume = str(run_dir)
    if cfg.resume and saved is not None:  # CONFIG alone: a run directory from before composed.yaml existed
        started = run_dir / OVERRIDES
        cfg = resumed_config(OmegaConf.load(saved), overrides,
                             OmegaConf.load(started) if started.is_file() else [])
        cfg.resume = str(run_dir) if rerun else cfg.resume
    elif saved is not None or (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} already holds a run: continue it with resume={run_dir}, or choose another "
                         "directory (hydra.run.dir=...)")
    else:
        if cfg.resume == "auto":  # nothing to continue here: a new run
            cfg.resume = None
        added = [item for item in overrides if item.startswith("+") and not item.startswith("++")
                 and not plugins.is_group(item.lstrip("+").partition("=")[0])]  # +<group>=<option> adds a config
        if added:
            raise ValueError(f"{added[0]!r} adds a key that no part of a new run reads; drop the '+' to set an "
                             "existing key (the valid keys are in the run's config.yaml)")
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ValueError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    hydra_cfg = HydraConfig.get()
    cfg.device = spread_device(cfg.device, hydra_cfg.job.get("num", 0) or 0, torch.cuda.device_count(),
                               hydra_cfg.mode == RunMode.MULTIRUN)
    if not (run_dir / OVERRIDES).is_file():
        OmegaConf.save(OmegaConf.create(overrides), run_dir / OVERRIDES)
    OmegaConf.save(cfg, run_dir / COMPOSED)
    OmegaConf.save(cfg, run_dir / CONFIG, resolve=True)
    return cfg, run_dir


def resumed_config(saved: DictConfig, overrides: list[str], started: list[str] = ()) -> DictConfig:
    """The saved configuration with the allowed overrides applied; any other override is refused, except one the run
    was started with (``started``): repeating the starting command with ``resume=auto`` continues the run."""
    cfg = saved.copy()
    for item in overrides:
        if item in started:
            continue
        item = item.lstrip("+~")
        key = item.partition("=")[0]
        if key not in ("resume", *RESUMABLE):
            raise ValueError(f"cannot change {key!r} when resuming: a resumed run keeps its model, data, seed and the "
                             f"schedule it has run; only {', '.join(RESUMABLE)} may change")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    return cfg


def hparams(cfg: DictConfig) -> dict[str, bool | int | float | str]:
    """The run's settings for TensorBoard's HParams tab: the class of each component (``strategy: GDAS``) and every
    plain value, flattened (``strategy.tau_max``); the run node (a copy of top-level values) and display keys left out."""
    flat: dict[str, bool | int | float | str] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{name}.")
            elif key == "_target_":
                flat[prefix.rstrip(".")] = str(value).rsplit(".", 1)[-1]
            elif key != "_partial_":
                flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)

    skip = ("progress", "resume", "seeds", "published", "protocol")  # display, preset records
    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in skip}, "")
    first = [k for k in swept_keys() if k in flat]  # a sweep's table leads with what was swept
    return {**{k: flat[k] for k in first}, **flat}


def hypergradient(cfg: DictConfig) -> Hypergradient | None:
    """The method of ``hypergradient=<method>`` (conf/hypergradient/); None for ``none`` (or a run from before it)."""
    node = cfg.get("hypergradient")
    return instantiate(node) if node else None
