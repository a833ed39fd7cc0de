"""Plumbing shared by the entry points train_search.py and train_final.py (the only Hydra users).

- Run directories: each new run creates its own (atomically, with a ``_1``, ``_2``... suffix when two runs start in
  the same second); a directory that holds a run is never reused for a new one.
- Configuration: a run directory holds it twice: ``config.yaml``, fully resolved (what ran, for reading and
  comparing), and ``composed.yaml``, as composed with its interpolations (``run.epochs: ${epochs}``), which a
  resumed run reads so that an allowed override reaches every value derived from it.
- Settings are checked when the configuration is built (``CHECKS``), and user errors end the process with one
  line on stderr (``reporting``).
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from darts.distributed import SINGLE, Distributed
from darts.divergence import Diverged
from darts.runs.directory import CHECKPOINT, CONFIG, find_resume_dir, write_atomic

log = logging.getLogger("darts")
CONF = Path(__file__).resolve().parent / "conf"
COMPOSED = "composed.yaml"
OVERRIDES = "overrides.yaml"  # the command-line overrides the run was started with
# One resume rule for both entry points: a resumed run may change only what alters neither the model, the data,
# the seed nor the part of the schedule already run: a longer schedule or budget, and how it runs.
RESUMABLE = ("epochs", "strategy.budget", "strategy.time_budget", "device", "progress", "precision",
             "channels_last", "fast", "compile", "deterministic", "evaluator.workers")
USER_ERRORS = (ValueError, FileNotFoundError, Diverged)


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


_NEW_DIRS: dict[str, str] = {}
RENDEZVOUS_S = 120  # how long the other ranks of a torchrun job wait for rank 0's run directory


def _create_dir(default: str) -> str:
    """``default``, else ``default_1``, ``default_2``...: the first that this process creates (os.mkdir is atomic)."""
    path = Path(default)
    path.parent.mkdir(parents=True, exist_ok=True)
    for k in itertools.count():
        candidate = path if k == 0 else path.with_name(f"{path.name}_{k}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            continue


def _rendezvous() -> Path:
    """The file through which rank 0 of a torchrun job tells the job's other ranks (on its node: they share the
    torchrun agent, their parent process) the run directory it created."""
    job = f"{os.getppid()}-{os.environ.get('TORCHELASTIC_RUN_ID', '')}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"
    return Path(tempfile.gettempdir()) / f"darts-run-dir-{job}"


def _await_rank0() -> str:
    """The run directory rank 0 created (a ValueError after RENDEZVOUS_S seconds without it)."""
    deadline = time.time() + RENDEZVOUS_S
    while not _rendezvous().is_file():
        if time.time() > deadline:
            raise ValueError("rank 0 named no run directory: on several nodes give the run's directory on a shared "
                             "file system with hydra.run.dir=...")
        time.sleep(0.05)
    return _rendezvous().read_text()


def new_run_dir(default: str) -> str:
    """A new run directory: ``default``, else ``default_1``, ``default_2``... (runs started in the same second by
    several processes each get their own); one per process, and one per torchrun job: rank 0 creates it, the other
    ranks take rank 0's."""
    if default not in _NEW_DIRS:
        ranks, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        _NEW_DIRS[default] = _await_rank0() if rank > 0 else _create_dir(default)
        if ranks > 1 and rank == 0:
            write_atomic(_rendezvous(), _NEW_DIRS[default])
    return _NEW_DIRS[default]


def _items(overrides: str) -> list[str]:
    """Hydra's override_dirname split at the commas between overrides (not those escaped or inside quotes)."""
    items, current, quote, escaped = [], "", None, False
    for char in overrides:
        if char == "," and quote is None and not escaped:
            items.append(current)
            current = ""
            continue
        quote = (None if char == quote else quote) if quote else (char if char in "'\"" and not escaped else None)
        escaped = char == "\\" and not escaped
        current += char
    return [*items, current] if current else items


def run_name(overrides: str) -> str:
    """A sweep job's directory name: its overrides (Hydra's override_dirname, e.g. ``seed=1,strategy=gdas``), a value
    longer than 40 characters (a genotype text, a run directory) shortened to a hash, '/' kept out, at most 240
    characters (a file name holds 255)."""
    short = [item if len(item.partition("=")[2]) <= 40 else
             f"{item.partition('=')[0]}=#{hashlib.sha1(item.encode()).hexdigest()[:8]}" for item in _items(overrides)]
    name = ",".join(short).replace("/", "|") or "defaults"
    return name if len(name) <= 240 else f"{name[:231]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def register_run_dir(resolver: str, outputs: str) -> None:
    """``${<resolver>:${resume},<default dir>}``: the run to resume (a path, or ``true`` for the newest
    unfinished run under ``outputs``), else a new run directory (``new_run_dir``). ``${new_dir:<dir>}``: a new one;
    ``${run_name:<overrides>}``: a sweep job's directory name."""
    OmegaConf.register_new_resolver(
        resolver, lambda resume, default: str(find_resume_dir(resume, outputs) or new_run_dir(default)), replace=True)
    OmegaConf.register_new_resolver("new_dir", new_run_dir, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def export_root() -> None:
    """Keep the project root importable in the processes a launcher starts for the jobs (submitit unpickles the
    entry point's task there, which imports this module): prepend it to PYTHONPATH, which they inherit."""
    root = str(CONF.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, paths)])


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


def user_error(err: BaseException) -> BaseException | None:
    """The user error behind ``err`` (a bad value, a missing or corrupt file, a divergence), unwrapping Hydra's
    InstantiationException; None for anything else (a bug: it keeps its traceback)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, USER_ERRORS) else None


def reporting(main: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """``main``, where a user error exits with status 1 and its message as one line on stderr (and in the run's
    log); the traceback only with HYDRA_FULL_ERROR=1."""
    @functools.wraps(main)
    def wrapped(cfg: DictConfig) -> None:
        try:
            main(cfg)
        except Exception as err:
            cause = user_error(err)
            if cause is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if int(os.environ.get("RANK", 0)) > 0:  # a torchrun job's other ranks: rank 0 says it
                sys.exit(1)
            message = " ".join(f"{type(cause).__name__}: {cause}".split())
            log.error(message)
            sys.exit(message)
    return wrapped
