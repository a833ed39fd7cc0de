"""The data of a search: the training set split into a weight half and an architecture half, loaded on first use.

DARTS (sec. 3.1.1; cnn/train_search.py) trains the weights on one half of the training set and the
architecture on the other; discrete searches train candidates on the weight half and score them on
the other half. A run receives one ``SearchData`` and builds the loaders it needs, so a run that needs
no images (a tabular benchmark lookup) never reads them.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from darts.context import Context
from darts.data.datasets import Datasets
from darts.settings import number


def search_split(num: int, portion: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of range(num) into the weight part (first floor(portion*num)) and the arch part.

    DARTS cnn/train_search.py takes indices[:split] and indices[split:] with split = floor(train_portion * num);
    we permute first so that the halves do not depend on the file order.
    """
    if not 0.0 < portion < 1.0:
        raise ValueError(f"portion={portion} must lie strictly between 0 and 1")
    split = math.floor(portion * num)
    if split == 0 or split == num:
        raise ValueError(f"num={num} with portion={portion} leaves an empty half")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))  # (num,)
    return perm[:split], perm[split:]


class SearchData:
    """The search split of a dataset, loaded on first use.

    Args:
        load: returns the ``Datasets`` (called once, by ``load()``).
        train_portion: share of the training set in the weight half (``search_split``).
        seed: seeds the split.
        context: where the loaders put their batches (its device), and the ranks (with several, each loads its equal
            share of both halves, ``Distributed.shard``).
    """

    def __init__(self, load: Callable[[], Datasets], train_portion: float, seed: int, context: Context = Context()):
        number("train_portion", train_portion, 0, 1, low_open=True)
        self._load, self.train_portion, self.seed = load, train_portion, seed
        self.device, self.dist = context.device, context.dist
        self._datasets: Datasets | None = None
        self.weight_idx: torch.Tensor | None = None  # the halves, set by load()
        self.valid_idx: torch.Tensor | None = None

    def load(self) -> Datasets:
        """The datasets (loaded now if not yet; call it from the main thread before any worker starts)."""
        if self._datasets is None:
            self._datasets = self._load()
            weight_idx, valid_idx = search_split(len(self._datasets.train), self.train_portion, self.seed)
            self.weight_idx, self.valid_idx = self.dist.shard(weight_idx), self.dist.shard(valid_idx)
        return self._datasets

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.load().num_classes

    def weight_loader(self, batch_size: int, seed: int, device: torch.device | None = None):
        """The weight half, shuffled and augmented (a fresh loader: safe to use in a worker thread), on ``device``
        (default: the search's)."""
        return self.load().train.loader(batch_size, device or self.device, train=True, seed=seed, indices=self.weight_idx)

    def arch_loader(self, batch_size: int, seed: int):
        """The architecture half, shuffled and augmented as the weight half (DARTS cnn/train_search.py valid_queue)."""
        return self.load().train.loader(batch_size, self.device, train=True, seed=seed, indices=self.valid_idx)

    def valid_loader(self, batch_size: int, device: torch.device | None = None):
        """The architecture half in order and without augmentation, for scoring (NB201 scores on the eval transform),
        on ``device`` (default: the search's)."""
        return self.load().train.loader(batch_size, device or self.device, train=False, indices=self.valid_idx)
