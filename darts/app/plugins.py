"""Your own strategies, evaluators, spaces and datasets outside the package: ``DARTS_PLUGINS=/path/a:/path/b``.

Each plugin directory is put on the Python path (its modules are what its configs' ``_target_`` name) and its
``conf/`` folder, laid out as the package's (``strategy/``, ``evaluator/``, ``search_space/``...), is added to the
config search path. The variable is read again in every process a launcher starts, so sweeps see the plugins too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
VARIABLE = "DARTS_PLUGINS"


def directories() -> list[Path]:
    """The plugin directories ``DARTS_PLUGINS`` names, each checked to exist (ValueError naming one that does not)."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get(VARIABLE, "").split(os.pathsep) if p]
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"{VARIABLE}={os.environ[VARIABLE]!r}: {d} is not a directory")
    return dirs


def config_dirs() -> list[Path]:
    """Where configs are looked up: the package's ``conf/``, then each plugin's ``conf/``."""
    return [CONF, *(d / "conf" for d in directories() if (d / "conf").is_dir())]


def activate() -> list[str]:
    """Make the plugins' modules importable here and in child processes (``sys.path`` and ``PYTHONPATH``); the
    override that adds their ``conf/`` folders to Hydra's search path (none without plugins)."""
    dirs = directories()
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    for d in reversed(dirs):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
        if str(d) not in paths:
            paths.insert(0, str(d))
    if dirs:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    confs = [f"file://{d}" for d in config_dirs()[1:]]
    return [f"hydra.searchpath=[{','.join(confs)}]"] if confs else []


def options(group: str) -> set[str]:
    """The options of a config group across the package and the plugins (``strategy``: darts, gdas, ...; nested
    folders give ``a/b``)."""
    found = set()
    for conf in config_dirs():
        root = conf / group
        if root.is_dir():
            found |= {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")}
    return found


def is_group(name: str) -> bool:
    """Whether ``name`` is a config group (a folder of the package's or a plugin's ``conf/``)."""
    return any((conf / name).is_dir() for conf in config_dirs())
