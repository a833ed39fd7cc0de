"""The run wing: the run directory and the three run kinds (gradient search, discrete search, retraining)."""
