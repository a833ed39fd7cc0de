"""Hyperparameter tuning: a search space of settings, a study in a database driven by ask/tell (Optuna's samplers or
Nevergrad's optimizers), and the trial's side of pruning. Hydra-free: the sweeper plugin (``hydra_plugins``) is thin."""
