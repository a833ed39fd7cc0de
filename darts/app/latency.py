"""``darts-latency``: build (or refresh) a search space's latency table on this machine (``darts.cost.latency``).

    darts-latency --space nb201 [--device cpu|cuda] [--threads 1] [--batch 1] [--repeats 50] [--num-classes 10] \\
        [--input-size 32] [--out FILE] [--refresh] [model.init_channels=16 ...] [search_space.ops=s5 ...]

The space is built from its config (``conf/search_space/<space>.yaml``) with the same ``model.*`` and
``search_space.*`` overrides a search takes, so that a table built with a search's overrides fits that search. The
table goes to ``--out``, or to the cache (``~/.cache/darts/latency/<space>-<device>-<hash of its key>.json``); an
existing table for the same key is kept unless ``--refresh``.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from darts.app import plugins
from darts.app.errors import USER_ERRORS, user_error
from darts.cost.latency import LatencyTable, default_path, table_key
from darts.cost.timing import Timer
from search_spaces.base import SearchSpace

SIZED = ("model", "search_space")  # the config nodes an override may set: the space's constructor arguments


def space_config(name: str) -> Path:
    """The config file of space ``name`` (the package's or a plugin's); ValueError naming the valid ones."""
    path = next((d / "search_space" / f"{name}.yaml" for d in plugins.config_dirs()
                 if (d / "search_space" / f"{name}.yaml").is_file()), None)
    if path is None:
        raise ValueError(f"--space {name!r} is not valid; choose one of {', '.join(sorted(plugins.options('search_space')))}")
    return path


def build_space(name: str, overrides: list[str] = ()) -> SearchSpace:
    """Space ``name`` at its config's sizes with ``model.<key>=<value>`` / ``search_space.<key>=<value>`` overrides;
    ValueError for an override the space's constructor does not take, or a space without a cost model."""
    cfg = OmegaConf.load(space_config(name))
    valid = [p for p in inspect.signature(get_object(cfg.search_space._target_)).parameters if p != "self"]
    for item in overrides:
        node, _, key = item.partition("=")[0].partition(".")
        if "=" not in item or node not in SIZED or key not in valid:
            raise ValueError(f"{item!r} is not a valid override of {name}; set model.<key>=<value> (or "
                             f"search_space.<key>=<value>), <key> one of {', '.join(valid)}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    try:
        space = instantiate(cfg.search_space, **cfg.model)
    except InstantiationException as err:
        raise user_error(err) or err from None
    if not getattr(space, "costed", False):
        raise ValueError(f"--space {name!r} has no cost model (cost probes); the nb201 and darts spaces have one")
    return space


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="darts-latency", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("--space", required=True, help="a search space config (conf/search_space/): nb201 or darts")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:<i>")
    p.add_argument("--threads", type=int, default=None, help="CPU threads during timing (default 1; CPU only)")
    p.add_argument("--batch", type=int, default=1, help="batch size of every timed pass (default 1: one image)")
    p.add_argument("--repeats", type=int, default=50, help="timed passes per entry; their median counts (default 50)")
    p.add_argument("--num-classes", type=int, default=10, help="the classifier's outputs (default 10: CIFAR-10)")
    p.add_argument("--input-size", type=int, default=32, help="the images' height and width (default 32)")
    p.add_argument("--out", type=Path, default=None, help="the table file (default: the cache, keyed)")
    p.add_argument("--refresh", action="store_true", help="measure again even if the table exists")
    p.add_argument("overrides", nargs="*", help="model.<key>=<value> or search_space.<key>=<value>")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> Path:
    """Build (or keep) the table the options describe; its path."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    space = build_space(args.space, args.overrides)
    timer = Timer.of(args.device, args.threads, args.batch, args.repeats)
    key = table_key(space, args.num_classes, args.input_size, timer)
    path = (args.out or default_path(key)).expanduser()
    if path.is_file() and not args.refresh:
        table = LatencyTable.load(path, space, args.num_classes, args.input_size)
        print(f"[latency] {path} is up to date (measured {table.info.get('measured', '?')}); --refresh measures again")
        return path
    table = LatencyTable.measure(space, args.num_classes, args.input_size, timer, progress=True)
    table.save(path)
    threads = f", {timer.threads} thread(s)" if timer.threads else ""
    print(f"[latency] wrote {path}: {len(table.entries)} ops and the fixed part ({table.fixed:.3f} ms) on "
          f"{key['device']}{threads}, batch {timer.batch}, in {table.info['seconds']:.1f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    """The ``darts-latency`` command: a user error ends it with one line."""
    try:
        run(argv)
    except USER_ERRORS as err:
        sys.exit(f"{type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
