"""The one reader of a run directory: its configuration, space, result, genotype, per-epoch records and retrained
network. The report, the drawing command, the deployment steps, distillation and genotype resolution read runs
through it, so a run directory's layout is known here and in ``darts.runs.directory`` only."""
from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from darts.runs import checkpoint
from darts.runs.directory import CHECKPOINT, CONFIG, RESULT, read_jsonl
from darts.runs.network_spec import NetworkSpec
from darts.strategies.discrete.base import DiscreteStrategy
from search_spaces.base import SearchSpace

# retraining runs written before their config held a `search_space` node retrained DARTS-space cells
DEFAULT_SPACE = {"_target_": "search_spaces.darts.DartsSpace"}
MOVED_SPACE_KEYS = ("partial_channels", "auxiliary_skip")  # older runs' space keys, now the strategy's (SupernetOptions)
RUN_KINDS = {"SearchRun": "search", "DiscreteRun": "discrete"}  # older runs' run._target_ class
NETWORK = "model.pt"  # a deployment step's fp32 network (spec + state, as a retraining checkpoint)
SPEC_KEYS = ("network", "genotype", "num_classes", "auxiliary")  # NetworkSpec.to_dict's keys beside the size keywords


def attribute(dotted: str) -> Any:
    """The object a dotted path names (``package.module.Name``), as Hydra's ``_target_``."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build(node: dict[str, Any], **kwargs: Any) -> Any:
    """The object a plain config node names (``_target_`` and its keywords), as Hydra's ``instantiate``."""
    node = {k: v for k, v in node.items() if k != "_partial_"}
    return attribute(node.pop("_target_"))(**node, **kwargs)


def run_dirs(directory: str | Path) -> list[Path]:
    """The run directories (holding ``config.yaml``) at or below ``directory``, Hydra's ``.hydra/`` skipped, in
    natural order (``seed=2`` before ``seed=10``)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    found = [p.parent for p in root.rglob(CONFIG) if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not found:
        raise ValueError(f"{root} holds no run directory (no {CONFIG} in it or below it)")
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])


_spaces: dict[str, SearchSpace] = {}


def load_space(node: dict[str, Any]) -> SearchSpace:
    """The space a node names (``_target_`` and constructor keywords), built once per setting."""
    key = json.dumps(node, sort_keys=True, default=str)
    if key not in _spaces:
        _spaces[key] = build(node)
    return _spaces[key]


@dataclass(frozen=True, eq=False)
class Run:
    """One run directory (finished or not): read lazily, each file once."""

    path: Path
    config: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run in ``path``; FileNotFoundError for no such directory, ValueError for one that holds no run."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run directory")
        if not (path / CONFIG).is_file():
            raise ValueError(f"{path} is not a run directory (no {CONFIG})")
        try:
            return cls(path, yaml.safe_load((path / CONFIG).read_text()) or {})
        except yaml.YAMLError as err:
            raise ValueError(f"{path / CONFIG} is not valid YAML ({str(err).splitlines()[0]})") from None

    @cached_property
    def kind(self) -> str:
        """``search`` (gradient), ``discrete`` (a ``DiscreteStrategy``), ``final`` (retraining: no strategy) or
        ``deploy``."""
        if "deploy" in self.config:
            return "deploy"
        if "run" in self.config:  # older runs named their kind
            return RUN_KINDS.get(self.config["run"]["_target_"].rsplit(".", 1)[-1], "search")
        strategy = self.config.get("strategy")
        if not strategy:
            return "final"
        return "discrete" if issubclass(attribute(strategy["_target_"]), DiscreteStrategy) else "search"

    @property
    def finished(self) -> bool:
        """Whether the run wrote its result."""
        return (self.path / RESULT).is_file()

    @cached_property
    def result(self) -> dict[str, Any]:
        """``result.json``; ValueError for an unfinished run."""
        if not self.finished:
            raise ValueError(f"{self.path} has not finished (no {RESULT})")
        return json.loads((self.path / RESULT).read_text())

    @cached_property
    def space(self) -> SearchSpace:
        """The run's search space: its ``search_space`` node at the size of its ``model`` node."""
        node = {**(self.config.get("search_space") or DEFAULT_SPACE),
                **{k: v for k, v in (self.config.get("model") or {}).items() if not isinstance(v, dict)}}
        return load_space({k: v for k, v in node.items() if k not in MOVED_SPACE_KEYS})

    @cached_property
    def epochs(self) -> list[dict[str, Any]]:
        """``genotypes.jsonl`` (gradient searches): one record per epoch, the last one of an epoch written twice."""
        records = {r["epoch"]: r for r in read_jsonl(self.path / "genotypes.jsonl") if "epoch" in r}
        return [records[e] for e in sorted(records)]

    def genotype_file(self) -> Path | None:
        """The run's final genotype file: ``genotype.txt`` (the text keeps the concat's form), else ``genotype.json``."""
        return next((self.path / n for n in ("genotype.txt", "genotype.json") if (self.path / n).is_file()), None)

    def network_spec(self, file: str = CHECKPOINT) -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
        """The retrained network's spec and weights saved in ``file`` (a retraining checkpoint, or a deployment step's
        ``model.pt``); ValueError when the file holds no network (a search's checkpoint)."""
        state = checkpoint.load(self.path / file)
        saved = state.get("spec")
        if not isinstance(saved, dict):
            raise ValueError(f"{self.path / file} holds no network spec (a search run's?): give a retraining run")
        network = partial(attribute(saved["network"]), **{k: v for k, v in saved.items() if k not in SPEC_KEYS})
        spec = NetworkSpec(network, self.space.parse(saved["genotype"]), self.space, saved["num_classes"],
                           saved["auxiliary"])
        return spec, state["model"]


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
        file = Run(path, {}).genotype_file()
        if file is not None:
            return resolve_genotype(file, space)
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
