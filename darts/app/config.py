"""The configuration of a run: composed by Hydra, checked, saved in the run directory, and merged on resume.

A run directory holds it twice: ``config.yaml``, fully resolved (what ran, for reading and comparing), and
``composed.yaml``, as composed with its interpolations, which a resumed run reads so that an allowed override
reaches every value derived from it.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from darts.distributed import SINGLE, Distributed
from darts.runs.directory import CHECKPOINT, CONFIG, find_resume_dir

CONF = Path(__file__).resolve().parents[1] / "conf"
COMPOSED = "composed.yaml"
OVERRIDES = "overrides.yaml"  # the command-line overrides the run was started with
# One resume rule for both entry points: a resumed run may change only what alters neither the model, the data,
# the seed nor the part of the schedule already run: a longer schedule or budget, and how it runs.
RESUMABLE = ("epochs", "strategy.budget", "strategy.time_budget", "device", "progress", "precision",
             "channels_last", "fast", "compile", "deterministic", "evaluator.workers")


def _integer(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"an integer >= {low}"


def _number(test: Callable[[float], bool], what: str, nullable: bool = False) -> tuple[Callable[[Any], bool], str]:
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and test(v)  # noqa: E731
    return ((lambda v: v is None or number(v)), f"null or {what}") if nullable else (number, what)


# key -> (check, the valid values in words); applied to the keys a configuration has
CHECKS = {
    "epochs": _integer(1), "batch_size": _integer(1), "seed": _integer(0), "cutout": _integer(0),
    "steps_per_epoch": ((lambda v: v is None or _integer(1)[0](v)), "null or an integer >= 1"),
    "train_portion": _number(lambda v: 0 < v < 1, "a number in (0, 1)"),
    "valid_portion": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.lr": _number(lambda v: v > 0, "a number > 0"),
    "optimizer.lr_min": _number(lambda v: v >= 0, "a number >= 0"),
    "optimizer.momentum": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.weight_decay": _number(lambda v: v >= 0, "a number >= 0"),
    "optimizer.grad_clip": _number(lambda v: v > 0, "a number > 0", nullable=True),
    "auxiliary_weight": _number(lambda v: v >= 0, "a number >= 0"),
    "drop_path_prob": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "model.init_channels": _integer(1), "model.layers": _integer(1), "model.cells_per_stage": _integer(1),
    "strategy.arch_lr": _number(lambda v: v > 0, "a number > 0"),
    "strategy.arch_start_epoch": _integer(0), "strategy.budget": _integer(1),
    "strategy.time_budget": _number(lambda v: v > 0, "a number > 0 (seconds)", nullable=True),
    "evaluator.workers": _integer(1), "evaluator.batch_size": _integer(1),
    "evaluator.lr": _number(lambda v: v > 0, "a number > 0"),
    "distill.temperature": _number(lambda v: v > 0, "a number > 0"),
    "distill.alpha": _number(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}


def check_settings(cfg: DictConfig) -> None:
    """ValueError naming the first setting outside its valid range (``CHECKS``), with the range."""
    for key, (valid, what) in CHECKS.items():
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is not KeyError and not valid(value):
            raise ValueError(f"{key}={value!r} is not valid: {what}")






def plugin_options(group: str) -> set[str]:
    """The options Hydra and its installed plugins register for a ``hydra/`` group (``hydra/launcher``: basic,
    joblib, submitit_local, submitit_slurm, beside the project's ``conf/hydra/launcher/``)."""
    if not group.startswith("hydra/"):
        return set()
    Plugins.instance()  # imports the plugins, which store their configs
    try:
        return {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except OSError:  # a group only the project defines
        return set()


def check_arguments(argv: list[str], outputs: str) -> None:
    """Before Hydra starts, one line and status 1 for: a config group option that does not exist (``strategy=foo``;
    Hydra would print a dozen lines), and a ``resume=`` that names no run (Hydra would fail inside its own error
    formatting while resolving the run directory)."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = CONF / key
        if sep and group.is_dir() and value.replace("/", "").replace("_", "").isalnum() \
                and not (group / f"{value}.yaml").is_file():
            options = {str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml")} | plugin_options(key)
            if value not in options:
                sys.exit(f"ValueError: {key}={value!r} is not valid; choose one of {', '.join(sorted(options))}")
    values = [arg.partition("=")[2].strip("'\"") for arg in argv if arg.startswith("resume=")]
    if values:
        try:
            find_resume_dir(values[-1], outputs)
        except FileNotFoundError as err:
            sys.exit(f"FileNotFoundError: {err}")


def rank_device(device: str, dist: Distributed) -> str:
    """Under torchrun with CUDA, each rank's own GPU (``cuda:LOCAL_RANK``) for ``device=auto`` or ``cuda``."""
    if dist.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"  # set from LOCAL_RANK by darts.distributed.from_environment
    return device


def spread_device(device: str, job: int, gpus: int, multirun: bool) -> str:
    """``device=auto`` for sweep job ``job`` when several GPUs are visible: ``cuda:(job mod gpus)``, so that jobs a
    parallel launcher runs at once (hydra/launcher=local_parallel) use different GPUs; any other case unchanged."""
    return f"cuda:{job % gpus}" if device == "auto" and multirun and gpus > 1 else device


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
    if cfg.resume and saved is not None:  # CONFIG alone: a run directory from before composed.yaml existed
        started = run_dir / OVERRIDES
        cfg = resumed_config(OmegaConf.load(saved), overrides,
                             OmegaConf.load(started) if started.is_file() else [])
    elif saved is not None or (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} already holds a run: continue it with resume={run_dir}, or choose another "
                         "directory (hydra.run.dir=...)")
    else:
        if cfg.resume == "auto":  # nothing to continue here: a new run
            cfg.resume = None
        added = [item for item in overrides if item.startswith("+")
                 and not (CONF / item.lstrip("+").partition("=")[0]).is_dir()]  # +<group>=<option> adds a config
        if added:
            raise ValueError(f"{added[0]!r} adds a key that no part of a new run reads; drop the '+' to set an "
                             "existing key (the valid keys are in the run's config.yaml)")
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ValueError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    check_settings(cfg)
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

    skip = ("run", "progress", "resume", "seeds", "published", "protocol")  # copies, display, preset records
    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in skip}, "")
    return flat


