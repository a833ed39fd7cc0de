"""Run directories: each new run creates its own (atomically, with a ``_1``, ``_2``... suffix when two runs start in the
same second); the ranks of a torchrun job agree on rank 0's; sweep jobs are named by their overrides. The resolvers
``${run_dir:...}``, ``${new_dir:...}`` and ``${run_name:...}`` of the configs (``register_run_dir``) use them."""
from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from darts.runs.directory import find_resume_dir, write_atomic

SWEPT = "DARTS_SWEPT_KEYS"  # the swept keys, for the job processes of a launcher
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


def record_sweep(keys: list[str]) -> None:
    """Remember the keys a sweep varies (``seed=0,1 strategy=darts,gdas``: seed, strategy) for this process and the
    job processes a launcher starts (an environment variable they inherit)."""
    os.environ[SWEPT] = ",".join(keys)


def swept_keys() -> list[str]:
    """The keys the current sweep varies (``record_sweep``); none outside a sweep."""
    return [k for k in os.environ.get(SWEPT, "").split(",") if k]


def run_name(overrides: str) -> str:
    """A sweep job's directory name (its name in TensorBoard): its values of the swept keys (e.g.
    ``seed=1,strategy=gdas``; every override of Hydra's override_dirname when nothing is swept), a value longer than
    40 characters (a genotype text, a run directory) shortened to a hash, '/' kept out, at most 240 characters (a
    file name holds 255)."""
    items, swept = [item.lstrip("+~") for item in _items(overrides)], swept_keys()
    if any(item.partition("=")[0] in swept for item in items):
        items = [item for item in items if item.partition("=")[0] in swept]
    short = [item if len(item.partition("=")[2]) <= 40 else
             f"{item.partition('=')[0]}=#{hashlib.sha1(item.encode()).hexdigest()[:8]}" for item in items]
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
