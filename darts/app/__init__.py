"""The commands (darts-search, darts-retrain, darts-protocol) and their plumbing: arguments, configuration, run
directories, plugins and one-line errors. The only part of ``darts`` that imports Hydra."""
