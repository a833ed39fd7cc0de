"""What a retraining trains: the genotype a user names (in any of its forms) and the network built from it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
import torch.nn as nn

from search_spaces.base import SearchSpace

def holdout_split(num: int, valid_portion: float, seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(train, valid) indices with ``valid_portion`` of ``range(num)`` held out, seeded; (None, None) for 0."""
    if not 0.0 <= valid_portion < 1.0:
        raise ValueError(f"valid_portion={valid_portion} must lie in [0, 1) (0 trains on the whole training set)")
    if valid_portion == 0.0:
        return None, None
    n_valid = math.floor(valid_portion * num)
    if n_valid == 0:
        raise ValueError(f"valid_portion={valid_portion} of {num} training images holds out none")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))  # (num,)
    return perm[n_valid:], perm[:n_valid]


@dataclass(frozen=True)
class NetworkSpec:
    """What builds the retrained network: ``network(genotype=..., num_classes=..., [auxiliary=True])``, where
    ``network`` is the recipe's network class with its size keywords (a partial, e.g.
    ``NetworkCIFAR(C=36, layers=20)`` or ``TinyNetwork(C=16, N=5)``); saved in checkpoints as ``to_dict()``."""

    network: Callable[..., nn.Module]
    genotype: Any
    space: SearchSpace
    num_classes: int
    auxiliary: bool = False

    def build(self) -> nn.Module:
        """A freshly initialised network (with its auxiliary head when ``auxiliary``)."""
        extra = {"auxiliary": True} if self.auxiliary else {}
        try:
            return self.network(genotype=self.genotype, num_classes=self.num_classes, **extra)
        except TypeError as err:
            if self.auxiliary and "auxiliary" in str(err):
                raise ValueError(f"{self.to_dict()['network']} has no auxiliary head; set auxiliary_weight=0") from None
            raise

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and result.json)."""
        func, keywords = (self.network.func, self.network.keywords) if isinstance(self.network, partial) \
            else (self.network, {})
        return {"network": f"{func.__module__}.{func.__qualname__}", **keywords,
                "genotype": self.space.to_text(self.genotype), "num_classes": self.num_classes,
                "auxiliary": self.auxiliary}
