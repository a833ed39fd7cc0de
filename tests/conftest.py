"""Shared test helpers: the real data beside the project, running entry points, reading TensorBoard."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    """The real CIFAR-10 subset in ImageFolder layout (../shared/data/cifar10-mini)."""
    path = SHARED_DATA / "cifar10-mini"
    if not (path / "train").is_dir():
        pytest.skip(f"real CIFAR-10 images not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    """The NAS-Bench-201 accuracy table (../shared/data/nb201/nb201_accuracies.csv)."""
    path = SHARED_DATA / "nb201" / "nb201_accuracies.csv"
    if not path.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {path} (see ../shared/data/README.md)")
    return path


def run_entry(script: str, run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an entry point (train_search.py, train_final.py) in a subprocess with Hydra overrides."""
    cmd = [sys.executable, str(ROOT / script), f"hydra.run.dir={run_dir}", "progress=false", *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def targets(node) -> list[str]:
    """Every _target_ in a config tree (OmegaConf DictConfig/ListConfig)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for k in node if k != "_target_" for t in targets(node._get_node(k))]
    if isinstance(node, ListConfig):
        return [t for v in node for t in targets(v)]
    return []


def read_json(path: Path) -> dict:
    """Load a JSON file."""
    return json.loads(Path(path).read_text())


def tensorboard_tags(run_dir: Path) -> dict[str, list[str]]:
    """Tags per kind ('scalars', 'images', 'tensors' for text) in a run directory's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc.Tags()


TIMING = ("time", "elapsed", "cost")  # the only fields of a history record that may differ between runs


def history_without_timing(run_dir: Path) -> list[dict]:
    """The records of a discrete run's history, timing fields removed."""
    from darts.runs.directory import read_jsonl
    from darts.runs.discrete import HISTORY

    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / HISTORY)]


def tabular_run(run_dir: Path, csv: Path, strategy, workers: int = 1):
    """A discrete run (``darts.runs.discrete.DiscreteRun``) in the NB201 space scored by the table."""
    from functools import partial

    from darts.evaluators import TabularEvaluator
    from darts.runs.discrete import DiscreteRun
    from search_spaces.nb201 import NB201Space

    return DiscreteRun(run_dir, NB201Space(), None, strategy, partial(TabularEvaluator, path=str(csv), workers=workers))


def ask_until_done(strategy, score, cost: float | None = None) -> list[list]:
    """Ask a discrete strategy and tell it ``score(genotype)`` (each evaluation costing ``cost`` seconds) until its
    budget is spent; the generations asked."""
    generations = []
    while not strategy.done:
        genotypes = strategy.ask()
        strategy.tell([score(g) for g in genotypes], None if cost is None else [cost] * len(genotypes))
        generations.append(genotypes)
    return generations
