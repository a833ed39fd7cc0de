"""The sweepers' settings, registered in Hydra's ConfigStore as ``hydra/sweeper=optuna`` and ``hydra/sweeper=nevergrad``
(the group Hydra's own sweepers use; docs/tuning.md describes each key).

Plain mappings, not dataclasses: Hydra pickles its config store into every job a launcher sends to another process
(submitit), and a dataclass node would make those jobs import this package; the sweeper checks the values."""
from hydra.core.config_store import ConfigStore

COMMON = {
    "n_trials": 20,            # trials in the study, those of an interrupted sweep included
    "n_jobs": 1,               # trials asked and launched at once (the launcher may run them in parallel)
    "seed": 0,                 # the sampler's (optimizer's) seed
    # result.json metric -> maximize | minimize (several: a multi-objective study; a task that returns numbers is
    # scored by them, in this order); null = {valid_acc: maximize}, a search's validation accuracy
    "objectives": None,
    "storage": None,           # any SQLAlchemy URL; null = sqlite:///<sweep dir>/study.db
    "study_name": "sweep",     # the study in the storage: the same name and storage resume it
    "params": {},              # key -> interval(a,b) | tag(log,interval(a,b)) | int(interval(a,b)) | range(a,b[,step])
                               # | choice(x,y,...)
}
OPTUNA = {
    "_target_": "hydra_plugins.darts_sweepers.sweeper.OptunaSweeper", **COMMON,
    "sampler": "tpe",          # tpe | gp | cmaes | nsgaii | nsgaiii | qmc | random | grid
    "sampler_args": None,      # the Optuna sampler's own keywords
    "pruner": None,            # median | successive_halving | hyperband; null = never prune
    "pruner_args": None,       # the Optuna pruner's own keywords
    "epoch_metric": None,      # the per-epoch metric reported to the study (valid_acc); null = the objective's name
                               # with a pruner, else none
}
NEVERGRAD = {
    "_target_": "hydra_plugins.darts_sweepers.sweeper.NevergradSweeper", **COMMON,
    "optimizer": "NGOpt",      # PSO | CMA | TwoPointsDE | OnePlusOne | NGOpt | any of ng.optimizers.registry
}

ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OPTUNA, provider="darts-nas")
ConfigStore.instance().store(group="hydra/sweeper", name="nevergrad", node=NEVERGRAD, provider="darts-nas")
