"""The sweepers' settings, registered in Hydra's ConfigStore as ``hydra/sweeper=optuna`` and ``hydra/sweeper=nevergrad``
(the group Hydra's own sweepers use; docs/tuning.md describes each key)."""
# no `from __future__ import annotations`: Hydra's plugin scan loads this module outside sys.modules, where dataclasses
# cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SweeperConf:
    """What both sweepers take: the study's budget, objectives, storage, space and pruning."""

    n_trials: int = 20                 # trials in the study, those of an interrupted sweep included
    n_jobs: int = 1                    # trials asked and launched at once (the launcher may run them in parallel)
    seed: Optional[int] = 0            # the sampler's (optimizer's) seed
    # result.json metric -> maximize | minimize (several: a multi-objective study; a task that returns numbers is
    # scored by them, in this order); null = {valid_acc: maximize}, a search's validation accuracy
    objectives: Any = None
    storage: Optional[str] = None      # any SQLAlchemy URL; null = sqlite:///<sweep dir>/study.db
    study_name: str = "sweep"          # the study in the storage: the same name and storage resume it
    params: Any = field(default_factory=dict)  # key -> interval(a,b) | tag(log,interval(a,b)) |
                                                          # int(interval(a,b)) | range(a,b[,step]) | choice(x,y,...)


@dataclass
class OptunaSweeperConf(SweeperConf):
    """Optuna: a sampler by name and its keyword arguments, and an optional pruner."""

    _target_: str = "hydra_plugins.darts_sweepers.sweeper.OptunaSweeper"
    sampler: str = "tpe"               # tpe | gp | cmaes | nsgaii | nsgaiii | qmc | random | grid
    sampler_args: Any = None  # the Optuna sampler's own keywords
    pruner: Optional[str] = None       # median | successive_halving | hyperband; null = never prune
    pruner_args: Any = None   # the Optuna pruner's own keywords
    epoch_metric: Optional[str] = None  # the per-epoch metric reported to the study (valid_acc); null = the
                                       # objective's name with a pruner, else none


@dataclass
class NevergradSweeperConf(SweeperConf):
    """Nevergrad: an optimizer by its registered name."""

    _target_: str = "hydra_plugins.darts_sweepers.sweeper.NevergradSweeper"
    optimizer: str = "NGOpt"           # PSO | CMA | TwoPointsDE | OnePlusOne | NGOpt | any of ng.optimizers.registry


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="darts-nas")
ConfigStore.instance().store(group="hydra/sweeper", name="nevergrad", node=NevergradSweeperConf, provider="darts-nas")
