"""The tuning studies in a report: each ``study.json`` a sweep wrote (``hydra/sweeper=optuna|nevergrad``) at or below
the report's directories, as its objectives, its trials by state and its best trials (the Pareto front of several
objectives), each with its settings and run directory."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from darts.runs.directory import RESULT

STUDY = "study.json"
PRUNED = "pruned"  # result.json's status of a trial the study's pruner stopped (darts.tuning.trial)


def pruned(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` is a tuning trial the study's pruner stopped (it has no final metrics)."""
    try:
        return json.loads((run_dir / RESULT).read_text()).get("status") == PRUNED
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def studies(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The ``study.json`` summaries at or below ``dirs``, each once, in path order."""
    paths = sorted({p.resolve() for d in dirs for p in Path(d).rglob(STUDY)})
    return [json.loads(p.read_text()) for p in paths]


def _cell(value: Any) -> str:
    """A table cell: a float to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def section(dirs: Iterable[str | Path]) -> str:
    """The report's markdown section on the studies under ``dirs`` (empty without any)."""
    found = studies(dirs)
    if not found:
        return ""
    lines = ["", "## Tuning studies", ""]
    for study in found:
        names = [f"{o['metric']} ({o['direction']})" for o in study["objectives"]]
        best = "Pareto front" if len(names) > 1 else "best trial"
        counts = ", ".join(f"{n} {state}" for state, n in sorted(study["states"].items()))
        lines += [f"### {study['study_name']} in `{study.get('storage', '')}`", "",
                  f"{study['n_trials']} trials ({counts}); objectives: {', '.join(names)}. The {best}:", ""]
        keys = sorted({k for t in study["best_trials"] for k in t["params"]})
        lines += ["| trial | " + " | ".join([*names, *keys]) + " | run directory |",
                  "|" + "---|" * (len(names) + len(keys) + 2)]
        for t in study["best_trials"]:
            cells = [*(t["values"] or []), *(t["params"].get(k, "") for k in keys)]
            lines.append(f"| {t['number']} | " + " | ".join(map(_cell, cells)) + f" | `{t['run_dir']}` |")
        lines.append("")
    return "\n".join(lines)
