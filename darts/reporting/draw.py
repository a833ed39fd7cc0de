"""Draw a genotype's cells: ``darts-draw SOURCE [--space SPACE] [--out FILE.png|.pdf|.svg]``.

SOURCE is anything ``darts-retrain genotype=`` takes: a genotype text, a published name, a ``.json``/``.txt`` file or
a run directory (whose ``config.yaml`` names its space). SPACE is a ``conf/search_space`` name (``darts``, ``nb201``,
``toy``) or a dotted class path; default: the run directory's space, else ``darts``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from darts.diagrams import draw_genotype, save
from darts.runs.directory import CONFIG
from darts.runs.reader import Run, build, resolve_genotype
from search_spaces.base import SearchSpace

CONF = Path(__file__).resolve().parents[1] / "conf" / "search_space"


def space_of(source: str, space: str | None) -> SearchSpace:
    """The space named by SPACE (a conf name, at its default size, or a class path), else the run directory's."""
    if space is None and (Path(source).expanduser() / CONFIG).is_file():
        return Run.open(source).space
    space = space or "darts"
    if "." in space:
        return build({"_target_": space})
    path = CONF / f"{space}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in CONF.glob("*.yaml"))
        raise ValueError(f"--space {space!r} is not valid; choose one of {', '.join(choices)} or a dotted class path")
    return build({"_target_": yaml.safe_load(path.read_text())["search_space"]["_target_"]})


def main(argv: list[str] | None = None) -> None:
    """``darts-draw``: draw SOURCE's cells to --out (default: genotype.png) and print the path."""
    p = argparse.ArgumentParser(prog="darts-draw", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("source", help="a genotype text, a published name, a .json/.txt file or a run directory")
    p.add_argument("--space", default=None, help="a conf/search_space name or a class path (default: darts)")
    p.add_argument("--out", default="genotype.png", help="the file to write: .png, .pdf or .svg")
    args = p.parse_args(argv)
    try:
        space = space_of(args.source, args.space)
        genotype = resolve_genotype(args.source, space)
        path = save(draw_genotype(space.cell_graphs(genotype), space.to_text(genotype)[:120]), args.out)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"{type(err).__name__}: {err}")
    print(path)


if __name__ == "__main__":
    main()
