"""What a retraining trains: the genotype a user names (in any of its forms) and the network built from it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from search_spaces.base import SearchSpace

FORMS = "a genotype text, a published name, a .json/.txt file or a search run directory"


def _parse(space: SearchSpace, text: str, where: str = "") -> Any:
    """``space.parse(text)`` with the source and the accepted forms in the error."""
    try:
        return space.parse(text)
    except ValueError as err:
        where = f" in {where}" if where else ""
        raise ValueError(f"genotype {text.strip()[:60]!r}{where} is not a genotype of {type(space).__name__} ({err}); "
                         f"give {FORMS} of that space (search_space=...)") from None


def _from_json(space: SearchSpace, path: Path) -> Any:
    """A ``space.to_json`` file, or a search ``result.json`` (its ``genotype`` text)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("genotype"), str):
        return _parse(space, data["genotype"], str(path))
    try:
        return space.from_json(data)
    except ValueError as err:
        raise ValueError(f"{path} holds no genotype of {type(space).__name__} ({err}); is it from another space "
                         f"(search_space=...)?") from None


def resolve_genotype(source: str | Path, space: SearchSpace) -> Any:
    """The genotype of ``space`` named by ``source``: its text (or, in the DARTS space, a published name), a ``.json``
    file (``space.to_json`` form or a search ``result.json``), a ``.txt`` file holding a text, or a search run
    directory (its final ``genotype.txt``, else ``genotype.json``)."""
    text = str(source).strip()
    path = Path(text).expanduser()
    if _is(path, Path.is_dir):
        for name in ("genotype.txt", "genotype.json"):  # the text keeps the concat's form, e.g. range(2, 6)
            if (path / name).is_file():
                return resolve_genotype(path / name, space)
        raise ValueError(f"run directory {path} has no genotype.json or genotype.txt (has its search finished? "
                         f"genotypes.jsonl holds the genotype of each finished epoch)")
    if _is(path, Path.is_file):
        if path.suffix == ".json":
            return _from_json(space, path)
        if path.suffix == ".txt":
            return _parse(space, path.read_text(), str(path))
        raise ValueError(f"genotype file {path} must end in .json or .txt")
    if path.suffix in (".json", ".txt") or text.endswith("/"):
        raise ValueError(f"genotype={text!r}: no such file or directory; give {FORMS}")
    return _parse(space, text)


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)``, False where the text cannot be a path at all (e.g. a genotype text longer than a file name)."""
    try:
        return test(path)
    except (OSError, ValueError):
        return False


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
