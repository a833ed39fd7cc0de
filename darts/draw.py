"""Draw a genotype's cells: ``python -m darts.draw SOURCE [--space SPACE] [--out FILE.png|.pdf|.svg]``.

SOURCE is anything ``train_final.py genotype=`` takes: a genotype text, a published name, a ``.json``/``.txt`` file or
a run directory (whose ``config.yaml`` names its space). SPACE is a ``conf/search_space`` name (``darts``, ``nb201``,
``toy``) or a dotted class path; default: the run directory's space, else ``darts``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from darts.diagrams import draw_genotype, save
from darts.runs.directory import CONFIG
from darts.runs.network_spec import resolve_genotype
from search_spaces.base import SearchSpace

CONF = Path(__file__).resolve().parents[1] / "conf" / "search_space"


def space_config(source: str, space: str | None) -> dict[str, Any]:
    """The ``search_space`` node: from SPACE (a conf name or a class path), else the run directory's config."""
    if space is None:
        config = Path(source).expanduser() / CONFIG
        if config.is_file():
            return yaml.safe_load(config.read_text())["search_space"]
        space = "darts"
    if "." in space:
        return {"_target_": space}
    path = CONF / f"{space}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in CONF.glob("*.yaml"))
        raise ValueError(f"--space {space!r} is not valid; choose one of {', '.join(choices)} or a dotted class path")
    return {"_target_": yaml.safe_load(path.read_text())["search_space"]["_target_"]}  # its default size


def build_space(node: dict[str, Any]) -> SearchSpace:
    """The space a ``search_space`` node names (only its class matters for drawing; sizes are kept when given)."""
    module, _, name = node["_target_"].rpartition(".")
    kwargs = {k: v for k, v in node.items() if k != "_target_" and not (isinstance(v, str) and "${" in v)}
    return getattr(importlib.import_module(module), name)(**kwargs)


def main(argv: list[str] | None = None) -> Path:
    """Draw SOURCE's cells to --out (default: genotype.png) and return the path."""
    p = argparse.ArgumentParser(prog="python -m darts.draw", description=__doc__.split("\n")[0])
    p.add_argument("source", help="a genotype text, a published name, a .json/.txt file or a run directory")
    p.add_argument("--space", default=None, help="a conf/search_space name or a class path (default: darts)")
    p.add_argument("--out", default="genotype.png", help="the file to write: .png, .pdf or .svg")
    args = p.parse_args(argv)
    try:
        space = build_space(space_config(args.source, args.space))
        genotype = resolve_genotype(args.source, space)
        path = save(draw_genotype(space.cell_graphs(genotype), space.to_text(genotype)[:120]), args.out)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"{type(err).__name__}: {err}")
    print(path)
    return path


if __name__ == "__main__":
    main()
