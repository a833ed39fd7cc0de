"""Sweeps through Hydra's launcher plugins (conf/hydra/launcher/): local parallel jobs (joblib) and submitit's local
executor (the SLURM launcher's stand-in) each finish every job of a sweep, in directories named by its overrides."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from darts.app import config as cli
from conftest import ROOT, command, read_json

TOY = ["search_space=toy", "dataset=fake", "dataset.num_train=16", "dataset.num_test=8", "dataset.image_size=8",
       "batch_size=4", "epochs=1", "progress=false"]


LAUNCHERS = ["local_parallel", "slurm_local", "joblib", "submitit_local"]
TUNED = ["joblib"]  # a study's trials in parallel job processes, against one SQLite storage (submitit: the same path)
TUNING = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.epoch_metric=lr",
          "optimizer.lr=tag(log,interval(0.01,0.1))"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple]:
    """A two-job sweep through each launcher, all started at once (each spawns its job processes), from a directory
    of its own as a cluster job would be."""
    procs = {}
    for launcher in LAUNCHERS:
        cwd = tmp_path_factory.mktemp(launcher)
        extra = ["hydra.launcher.n_jobs=2"] if launcher in ("local_parallel", "joblib") else []
        procs[launcher] = cwd, subprocess.Popen(
            [sys.executable, str(ROOT / "train_search.py"), "-m", *TOY, "seed=0,1", f"hydra/launcher={launcher}",
             *extra, f"hydra.sweep.dir={cwd / 'sweep'}"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
    for launcher in TUNED:  # job processes import this checkout (a trial reports through darts.tuning)
        cwd = tmp_path_factory.mktemp(f"tuned-{launcher}")
        extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
        procs[f"tuned-{launcher}"] = cwd, subprocess.Popen(
            [sys.executable, str(ROOT / "train_search.py"), "-m", *TOY, *TUNING, f"hydra/launcher={launcher}", *extra,
             f"hydra.sweep.dir={cwd / 'sweep'}"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    yield {launcher: (cwd, proc, *proc.communicate(timeout=600)) for launcher, (cwd, proc) in procs.items()}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_through_a_launcher_finishes_every_job(launcher, sweeps):
    """`-m seed=0,1 hydra/launcher=<launcher>` produces two finished runs, one per seed (run from another directory,
    as a cluster job would be), with the project's launcher configs and with the plugins' own."""
    tmp_path, proc, _, stderr = sweeps[launcher]
    assert proc.returncode == 0, stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert [p.parent.name.rsplit(",", 1)[-1] for p in runs] == ["seed=0", "seed=1"]
    assert all(read_json(p)["genotype"] for p in runs)


@pytest.mark.parametrize("launcher", TUNED)
def test_a_tuning_sweep_runs_its_trials_in_parallel_jobs(launcher, sweeps):
    """hydra/sweeper=optuna with n_jobs=2 through a launcher of job processes: both trials finish, each in a run
    directory named by its number, and each job process reported its epoch's metric to the one SQLite study."""
    import optuna

    tmp_path, proc, _, stderr = sweeps[f"tuned-{launcher}"]
    assert proc.returncode == 0, stderr[-3000:]
    study = read_json(tmp_path / "sweep" / "study.json")
    assert study["states"] == {"complete": 2}, study["states"]
    assert sorted(p.parent.name.split(",")[0] for p in (tmp_path / "sweep").glob("*/result.json")) == \
        [f"trial={k}" for k in range(2)]
    stored = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    assert [list(t.intermediate_values) for t in stored.trials] == [[0]] * 2


def test_parallel_jobs_spread_over_the_visible_gpus():
    """With device=auto in a sweep, job k runs on cuda:(k mod GPUs) when several GPUs are visible; otherwise the
    setting is left as it is."""
    assert [cli.spread_device("auto", k, 4, True) for k in range(6)] == [f"cuda:{k % 4}" for k in range(6)]
    assert cli.spread_device("auto", 3, 1, True) == "auto" and cli.spread_device("auto", 3, 4, False) == "auto"
    assert cli.spread_device("cpu", 3, 4, True) == "cpu"


def test_a_misspelt_launcher_is_one_line_naming_every_choice(tmp_path):
    """`hydra/launcher=slrum` stops before Hydra starts with one line listing the project's launchers and the
    plugins' own (basic, joblib, submitit_*)."""
    proc = command("train_search.py", "hydra/launcher=slrum", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert all(name in proc.stderr for name in ("'slrum'", "basic", "joblib", "local_parallel", "submitit_slurm"))
