"""A paper's evaluation protocol in one resumable command (DARTS, Liu et al., ICLR 2019, sec. 3.2):

    darts-protocol darts_v2 [--seeds 0,1] [--retrain-seeds 0] [--select-epochs 1] \\
        [--search key=value ...] [--retrain key=value ...] [--study DIR] [--launch key=value ...]

1. search: the preset's searches, one per seed (``darts-search -m +experiment=<preset> seed=...``);
2. select: each found cell trained from scratch briefly on the training set less a held-out part, as DARTS picks
   its cell ("training from scratch for a short period (100 epochs on CIFAR-10)");
3. final: the cell of best held-out accuracy retrained in full with the preset's retraining recipe, once per
   retraining seed;
4. report: ``darts-report`` over the study (``<study>/report``).

Every stage is a Hydra multirun (``--launch`` passes launcher settings, e.g. ``hydra/launcher=...``), whose jobs are
ordinary run directories under ``<study>/<stage>``. A stage that finished leaves ``<stage>/done``; the command run
again skips finished stages and continues an interrupted one (``resume=auto``). Stage sizes come from the preset
(``seeds``, ``protocol``) and the retraining preset (``seeds``); the options scale them down for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from darts.reporting.report import write_report

PRESETS = Path(__file__).resolve().parents[1] / "conf" / "experiment"


def preset(name: str) -> dict:
    """A preset's YAML (``conf/experiment/<name>.yaml``); ValueError naming the valid ones."""
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"preset {name!r} is not valid; choose one of {', '.join(sorted(p.stem for p in PRESETS.glob('*.yaml')))}")
    return yaml.safe_load(path.read_text())


def stage(study: Path, name: str, command: str, overrides: list[str], launch: list[str]) -> list[Path]:
    """Run (or continue) one stage as a multirun of ``command`` (``search`` or ``retrain``); its finished run
    directories, in name order."""
    root = study / name
    if not (root / "done").is_file():
        cmd = [sys.executable, "-m", f"darts.app.{command}", "-m", *overrides, *launch, f"hydra.sweep.dir={root}", "resume=auto"]
        print(f"[protocol] {name}: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"RuntimeError: the {name} stage failed (see its run directories under {root}); run the same "
                     "command again to continue it")
        (root / "done").write_text("\n".join(cmd) + "\n")
    return sorted(p.parent for p in root.glob("*/result.json"))


def quoted(value: object) -> str:
    """A value quoted for Hydra's override grammar (a run directory's name holds '=' and ',')."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def best_by_validation(runs: list[Path]) -> Path:
    """The selection run of highest held-out accuracy (``best_valid_accuracy``; the test set is never used)."""
    return max(runs, key=lambda run: json.loads((run / "result.json").read_text())["best_valid_accuracy"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="darts-protocol", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("preset", help="a search preset with a `protocol` node (conf/experiment/), e.g. darts_v2")
    p.add_argument("--study", default=None, help="the study directory (default: outputs/studies/<preset> here)")
    p.add_argument("--seeds", default=None, help="search seeds, e.g. 0,1 (default: the preset's)")
    p.add_argument("--retrain-seeds", default=None, help="final retraining seeds (default: the retraining preset's)")
    p.add_argument("--select-epochs", type=int, default=None, help="selection training epochs (default: the preset's)")
    p.add_argument("--search", nargs="*", default=[], help="overrides for the searches (e.g. epochs=1)")
    p.add_argument("--retrain", nargs="*", default=[], help="overrides for selection and final retraining")
    p.add_argument("--launch", nargs="*", default=[], help="Hydra launcher overrides for every stage")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> Path:
    """Run the protocol; returns the report's path."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        search = preset(args.preset)
        if "protocol" not in search:
            raise ValueError(f"preset {args.preset!r} has no `protocol` node (it is not a DARTS-space search preset)")
        plan = search["protocol"]
        retrain = preset(plan["retrain"])
    except ValueError as err:
        sys.exit(f"ValueError: {err}")
    study = Path(args.study or Path("outputs") / "studies" / args.preset).resolve()
    seeds = args.seeds or ",".join(map(str, search["seeds"]))
    searches = stage(study, "search", "search", [f"+experiment={args.preset}", f"seed={seeds}", *args.search],
                     args.launch)
    epochs = args.select_epochs or plan["select_epochs"]
    selected = stage(study, "select", "retrain",
                     [f"+experiment={plan['retrain']}", f"genotype=choice({','.join(map(quoted, searches))})",
                      f"epochs={epochs}",
                      f"valid_portion={plan['select_valid_portion']}", *args.retrain], args.launch)
    best = yaml.safe_load((best_by_validation(selected) / "config.yaml").read_text())["genotype"]
    retrain_seeds = args.retrain_seeds or ",".join(map(str, retrain["seeds"]))
    stage(study, "final", "retrain", [f"+experiment={plan['retrain']}", f"genotype={quoted(best)}",
                                             f"seed={retrain_seeds}", *args.retrain], args.launch)
    report = write_report([study / "search", study / "final"], study / "report")
    print(f"[protocol] report: {report}")
    return report


def main() -> None:
    """The ``darts-protocol`` command."""
    run()


if __name__ == "__main__":
    main()
