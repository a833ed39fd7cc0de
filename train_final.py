"""Retrain a cell from a clone: ``python train_final.py genotype=DARTS_V2 [key=value ...]``, the same as
``darts-retrain``."""
from darts.app.retrain import main

if __name__ == "__main__":
    main()
