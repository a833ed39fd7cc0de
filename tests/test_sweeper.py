"""The project's Hydra sweepers (hydra/sweeper=optuna|nevergrad, hydra_plugins/darts_sweepers): they propose what
Optuna's and Nevergrad's own ask/tell loops propose, resume an interrupted study without losing or repeating a trial,
return a Pareto front of non-dominated trials, prune trials through the run lifecycle, and reject bad settings in one
line. Toy objectives run in this process; real runs are tiny."""
from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path

import hydra
import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra

from conftest import ROOT, command, read_json

optuna = pytest.importorskip("optuna")
ng = pytest.importorskip("nevergrad")

TOY_SPACE = ["x=interval(-4.0,4.0)", "y=tag(log,interval(0.01,10.0))", "c=choice(a,b,c)"]
ConfigStore.instance().store(name="tuning_toy", node={"x": 0.0, "y": 1.0, "c": "a"})
CALLS: list[dict] = []
STOP_AT = {"call": None}  # the call that interrupts the sweep (a kill), None: none


def toy_value(x: float, y: float, c: str) -> float:
    """The toy objective (maximised): a smooth bump at x=1, y=1 with a bonus for c=b."""
    return -(x - 1) ** 2 - math.log(y) ** 2 + (0.5 if c == "b" else 0.0)


@hydra.main(version_base="1.3", config_path=str(Path(__file__).parent), config_name="tuning_toy")
def toy_app(cfg) -> float:
    """A Hydra app scoring its settings with ``toy_value``; it stops like a killed process on call ``STOP_AT``."""
    CALLS.append({"x": cfg.x, "y": cfg.y, "c": cfg.c})
    if STOP_AT["call"] == len(CALLS):
        raise KeyboardInterrupt
    return toy_value(cfg.x, cfg.y, cfg.c)


def sweep(sweep_dir: Path, *overrides: str) -> dict:
    """Run the toy app's sweep in this process (basic launcher); its study.json."""
    argv = sys.argv
    sys.argv = ["toy", "-m", f"hydra.sweep.dir={sweep_dir}", "hydra/job_logging=disabled",
                "hydra/hydra_logging=disabled", "hydra.sweeper.objectives={value: maximize}", *overrides]
    try:
        toy_app()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return read_json(sweep_dir / "study.json")


@pytest.fixture(autouse=True)
def fresh_calls():
    """Each test counts its own calls."""
    CALLS.clear()
    STOP_AT["call"] = None
    yield


def distributions() -> dict:
    """TOY_SPACE as Optuna's distributions, written out by hand."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {"x": FloatDistribution(-4.0, 4.0), "y": FloatDistribution(0.01, 10.0, log=True),
            "c": CategoricalDistribution(["a", "b", "c"])}


@pytest.mark.parametrize("name, sampler", [("tpe", "TPESampler"), ("cmaes", "CmaEsSampler")])
def test_optuna_sweeper_proposes_what_optunas_own_ask_tell_proposes(name, sampler, tmp_path):
    """With the same sampler and seed, the sweeper's sequence of settings equals Optuna's own study.ask/tell loop on
    the same space (14 trials: TPE's 10 random start-up trials and 4 modelled ones)."""
    space = TOY_SPACE[:2] if name == "cmaes" else TOY_SPACE  # CMA-ES models the real settings
    sweep(tmp_path, "hydra/sweeper=optuna", f"hydra.sweeper.sampler={name}", "hydra.sweeper.seed=3",
          "hydra.sweeper.n_trials=14", *space)
    study = optuna.create_study(sampler=getattr(optuna.samplers, sampler)(seed=3), direction="maximize")
    expected = []
    dists = {k: v for k, v in distributions().items() if any(s.startswith(f"{k}=") for s in space)}
    for _ in range(14):
        trial = study.ask(dists)
        expected.append(trial.params)
        study.tell(trial, toy_value(**{"c": "a", **trial.params}))
    assert [{k: c[k] for k in dists} for c in CALLS] == expected


def test_nevergrad_sweeper_proposes_what_nevergrads_own_ask_tell_proposes(tmp_path):
    """With the same optimizer (PSO) and seed, the sweeper's settings equal Nevergrad's own ask/tell loop on the same
    parametrization (losses the negated values, as the study maximises)."""
    import numpy as np

    sweep(tmp_path, "hydra/sweeper=nevergrad", "hydra.sweeper.optimizer=PSO", "hydra.sweeper.seed=5",
          "hydra.sweeper.n_trials=12", *TOY_SPACE)
    param = ng.p.Instrumentation(x=ng.p.Scalar(lower=-4.0, upper=4.0), y=ng.p.Log(lower=0.01, upper=10.0),
                                 c=ng.p.Choice(["a", "b", "c"]))
    param.random_state = np.random.RandomState(5)
    optimizer = ng.optimizers.PSO(parametrization=param, budget=12, num_workers=1)
    expected = []
    for _ in range(12):
        candidate = optimizer.ask()
        expected.append(dict(candidate.kwargs))
        optimizer.tell(candidate, -toy_value(**candidate.kwargs))
    assert CALLS == expected


@pytest.mark.parametrize("sweeper", ["optuna", "nevergrad"])
def test_an_interrupted_sweep_resumes_to_exactly_its_trials(sweeper, tmp_path):
    """A sweep killed during its 4th trial and rerun with the same SQLite storage ends with exactly the 7 configured
    trials, all complete, each setting run to completion once; the interrupted trial is run again under its own
    number and settings."""
    args = [f"hydra/sweeper={sweeper}", "hydra.sweeper.n_trials=7", "hydra.sweeper.seed=1",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", *TOY_SPACE]
    STOP_AT["call"] = 4
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path / "first", *args)
    interrupted = CALLS[-1]
    STOP_AT["call"] = None
    summary = sweep(tmp_path / "second", *args)
    assert summary["n_trials"] == 7 and summary["states"] == {"complete": 7}
    assert len(CALLS) == 8 and CALLS[4] == interrupted  # 3 finished + 1 killed, then the killed one again + 3 new
    completed = CALLS[:3] + CALLS[4:]
    stored = [t["params"] for t in sorted(summary["trials"], key=lambda t: t["number"])]
    assert completed == stored and len({json.dumps(p, sort_keys=True) for p in stored}) == 7


def test_a_finished_study_reruns_no_trial(tmp_path):
    """Rerunning a finished sweep with its storage asks nothing: the study already holds its trials."""
    args = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", *TOY_SPACE]
    first = sweep(tmp_path, *args)
    again = sweep(tmp_path, *args)
    assert len(CALLS) == 3 and first["trials"] == again["trials"]


def test_grid_and_other_samplers_cover_their_space(tmp_path):
    """sampler=grid tries each value of a choice and a range once; gp and qmc run on the same space."""
    summary = sweep(tmp_path / "grid", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid",
                    "hydra.sweeper.n_trials=6", "c=choice(a,b,c)", "x=range(0,2)")
    assert sorted((c["c"], c["x"]) for c in CALLS) == sorted((c, x) for c in "abc" for x in (0, 1))
    assert summary["best_trials"][0]["params"] == {"c": "b", "x": 1}
    for name in ("gp", "qmc"):
        CALLS.clear()
        summary = sweep(tmp_path / name, "hydra/sweeper=optuna", f"hydra.sweeper.sampler={name}",
                        "hydra.sweeper.n_trials=3", *TOY_SPACE[:2])
        assert len(CALLS) == 3 and summary["states"] == {"complete": 3}


@pytest.mark.parametrize("bad, named", [
    ("hydra.sweeper.sampler=tpx", ["'tpx'", "tpe", "nsgaii", "grid"]),
    ("hydra.sweeper.pruner=meridian", ["'meridian'", "median", "hyperband", "successive_halving"]),
    ("strategy.arch_lr=interval(0.1,0.01)", ["strategy.arch_lr", "0.1", "0.01"]),
])
def test_a_bad_setting_is_one_line_naming_it_and_the_choices(bad, named, tmp_path):
    """A misspelt sampler or pruner, or an empty interval, stops the sweep with one line on stderr naming the bad
    value and the valid choices."""
    proc = command("train_search.py", "-m", "hydra/sweeper=optuna", "search_space=toy", "dataset=fake",
                   "strategy.arch_lr=tag(log,interval(1e-4,1e-2))", bad, f"hydra.sweep.dir={tmp_path}",
                   "progress=false", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert all(word in proc.stderr for word in named), proc.stderr


def test_a_misspelt_sweeper_is_one_line_naming_the_sweepers(tmp_path):
    """`hydra/sweeper=optun` stops before Hydra starts with one line naming Hydra's basic sweeper and the project's
    two; Hydra's own groups (hydra/job_logging=disabled) are left to Hydra."""
    proc = command("train_search.py", "-m", "hydra/sweeper=optun", "hydra/job_logging=disabled", "search_space=toy",
                   cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert all(name in proc.stderr for name in ("'optun'", "basic", "optuna", "nevergrad")), proc.stderr
    assert "job_logging" not in proc.stderr


def test_a_bad_nevergrad_optimizer_names_the_common_ones(tmp_path):
    """An optimizer name Nevergrad does not register is one line naming it and the common ones."""
    proc = command("train_search.py", "-m", "hydra/sweeper=nevergrad", "hydra.sweeper.optimizer=PSX",
                   "search_space=toy", "dataset=fake", "optimizer.lr=interval(0.01,0.1)",
                   f"hydra.sweep.dir={tmp_path}", "progress=false", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert all(w in proc.stderr for w in ("'PSX'", "PSO", "CMA", "TwoPointsDE", "OnePlusOne", "NGOpt"))


def test_installing_the_project_never_requires_the_released_sweeper_plugins():
    """No dependency or extra of the project names hydra-optuna-sweeper, hydra-nevergrad-sweeper or
    hydra-ax-sweeper; the sweepers ship as the hydra_plugins namespace package (no __init__.py in it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["project"]["dependencies"],
                    *(r for extra in project["project"]["optional-dependencies"].values() for r in extra)]
    assert not [r for r in requirements if "sweeper" in r.lower()], requirements
    assert any(r.startswith("optuna>=4") for r in project["project"]["optional-dependencies"]["tune"])
    assert "hydra_plugins*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()
    assert (ROOT / "hydra_plugins" / "darts_sweepers" / "__init__.py").is_file()


NB201_TINY = ["search_space=nb201", "dataset=fake", "dataset.num_train=16", "dataset.num_test=8", "dataset.image_size=8",
              "batch_size=4", "epochs=1", "model.init_channels=4", "model.cells_per_stage=1", "device=cpu",
              "progress=false"]
TOY_SEARCH = ["search_space=toy", "dataset=fake", "dataset.num_train=16", "dataset.num_test=8", "dataset.image_size=8",
              "batch_size=4", "device=cpu", "progress=false"]


def dominated(a: list[float], b: list[float], signs: list[int]) -> bool:
    """Whether point ``a`` is dominated by ``b`` (signs: +1 maximised, -1 minimised)."""
    better_or_equal = all(s * y >= s * x for x, y, s in zip(a, b, signs))
    return better_or_equal and any(s * y > s * x for x, y, s in zip(a, b, signs))


def test_nsga2_over_a_gradient_search_returns_a_front_of_non_dominated_trials(nb201_csv, tmp_path):
    """NSGA-II over a tiny NB201 DARTS search's strategy.arch_lr and optimizer.lr, maximising the table's validation
    accuracy of the derived cell and minimising its parameters, returns a front (study.json) whose every point is
    non-dominated among the trials run, and every non-dominated trial is on it; each trial is a run directory
    named by its number and settings."""
    command("train_search.py", "-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=nsgaii",
            "hydra.sweeper.sampler_args={population_size: 2}", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.objectives={cifar10_valid_12ep: maximize, params: minimize}", f"benchmark.path={nb201_csv}",
            "strategy.arch_lr=tag(log,interval(1e-4,0.3))", "optimizer.lr=tag(log,interval(1e-3,0.5))",
            *NB201_TINY, f"hydra.sweep.dir={tmp_path}", cwd=tmp_path, check=True)
    study = read_json(tmp_path / "study.json")
    assert study["n_trials"] == 4 and study["states"] == {"complete": 4}
    points = {t["number"]: t["values"] for t in study["trials"]}
    front = {t["number"] for t in study["best_trials"]}
    undominated = {n for n, v in points.items() if not any(dominated(v, w, [1, -1]) for w in points.values())}
    assert front and front == undominated
    for trial in study["trials"]:
        result = read_json(tmp_path / trial["run_dir"] / "result.json")
        assert trial["run_dir"].startswith(f"trial={trial['number']},strategy.arch_lr=")
        assert trial["values"] == [result["benchmark"]["cifar10_valid_12ep"], result["cost"]["params"]]
    command("darts.reporting.report", str(tmp_path), check=True)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Tuning studies" in report and "The Pareto front:" in report
    assert all(f"`{t['run_dir']}`" in report for t in study["best_trials"])


def pruning_sweep(sweep_dir: Path, *pruning: str) -> dict:
    """A two-trial sweep of a 4-epoch toy search, the trials' settings enqueued (optimizer.lr 0.1 then 0.001),
    reporting the epoch's learning rate (deterministic: a lower base rate is lower in every epoch)."""
    storage = f"sqlite:///{sweep_dir / 'study.db'}"
    sweep_dir.mkdir(parents=True)
    study = optuna.create_study(storage=storage, study_name="sweep", direction="maximize")
    for lr in (0.1, 0.001):
        study.enqueue_trial({"optimizer.lr": lr})
    command("train_search.py", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.epoch_metric=lr",
            *pruning, "optimizer.lr=choice(0.1,0.001)", *TOY_SEARCH, "epochs=4", f"hydra.sweep.dir={sweep_dir}",
            cwd=sweep_dir, check=True)
    return read_json(sweep_dir / "study.json")


def test_a_pruned_trial_is_marked_pruned_and_saves_time(tmp_path):
    """With the median pruner (one start-up trial, no warm-up), the second trial, whose epoch metric is below the
    first's, stops after its first epoch: its result.json says pruned, the study holds it pruned, and the sweep
    runs 5 epochs instead of 8, in less epoch time than the same sweep without a pruner."""
    from darts.runs.reader import Run

    pruned = pruning_sweep(tmp_path / "pruned", "hydra.sweeper.pruner=median",
                           "hydra.sweeper.pruner_args={n_startup_trials: 1, n_warmup_steps: 0}")
    full = pruning_sweep(tmp_path / "full")
    assert [t["state"] for t in pruned["trials"]] == ["complete", "pruned"]
    assert [t["state"] for t in full["trials"]] == ["complete", "complete"]
    stopped = read_json(tmp_path / "pruned" / pruned["trials"][1]["run_dir"] / "result.json")
    assert stopped["status"] == "pruned" and stopped["pruned_after_epoch"] == 0 and stopped["lr"] == 0.001
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'pruned' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    epochs = {name: [Run(tmp_path / name / t["run_dir"], {}).epochs for t in s["trials"]]
              for name, s in (("pruned", pruned), ("full", full))}
    assert [len(e) for e in epochs["pruned"]] == [4, 1] and [len(e) for e in epochs["full"]] == [4, 4]
    seconds = {name: sum(r["epoch_time"] for e in runs for r in e) for name, runs in epochs.items()}
    assert seconds["pruned"] < seconds["full"], seconds
    command("darts.reporting.report", str(tmp_path / "pruned"), check=True)  # the pruned run is left out
    report = (tmp_path / "pruned" / "report" / "report.md").read_text()
    assert "1 finished runs" in report and "2 trials (1 complete, 1 pruned)" in report


def test_hydras_plugin_scan_imports_no_tuning_library():
    """Hydra imports every module of hydra_plugins when any app starts: the sweepers' modules import neither Optuna,
    Nevergrad nor torch then (an app that does not tune pays nothing, and a broken library cannot break it)."""
    import subprocess

    code = ("import sys; from hydra.core.plugins import Plugins; from hydra.core.config_store import ConfigStore; "
            "Plugins.instance(); print(sorted(ConfigStore.instance().list('hydra/sweeper')), "
            "[m for m in ('optuna', 'nevergrad', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['basic.yaml', 'nevergrad.yaml', 'optuna.yaml'] []", out
