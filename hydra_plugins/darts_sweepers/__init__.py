"""darts-nas's Hydra sweepers: ``hydra/sweeper=optuna`` (Optuna >= 4 samplers and pruners) and
``hydra/sweeper=nevergrad`` (Nevergrad >= 1.0 optimizers), through their ask/tell interfaces, with the study in a
database. Hydra imports every module of ``hydra_plugins`` when it starts: these import neither Optuna, Nevergrad nor
torch until a sweep runs, so that an application that does not tune pays nothing and cannot break."""
