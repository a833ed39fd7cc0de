"""Search for a cell from a clone: ``python train_search.py [key=value ...]``, the same as ``darts-search``."""
from darts.app.search import main

if __name__ == "__main__":
    main()
