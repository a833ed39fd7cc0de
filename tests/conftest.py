"""Shared test helpers: the real data beside the project, running entry points, reading TensorBoard."""
from __future__ import annotations

import importlib
import io
import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# tests that use these fixtures run real searches, retrainings or several processes: marked slow (pytest -m "not slow"
# runs the rest in under two minutes); others are marked where they are defined
SLOW_FIXTURES = {"cifar_mini", "mini_images", "nb201_csv", "runs", "entry_runs", "study", "recorded", "resumed",
                 "sweeps", "retrained", "chain", "finished_run", "teacher_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark as slow every test that uses a slow fixture (``SLOW_FIXTURES``)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs torch on one thread: tiny models run fastest so, and two spinning threads on 2 shared cores
    made a forward pass of the tiny DARTS supernet 100x slower (0.1 s against 12-22 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def counted_time() -> Iterator[None]:
    """Latency tables timed by work instead of the clock: each timed pass "takes" 10 us plus 1 ns per multiply-
    accumulate (``darts.cost.counting``), so tests of the tables' structure do not hang on this machine's load (a
    noisy two-repeat timing can make the probes' latencies look unrelated to their ops)."""
    from darts.cost.counting import count
    from darts.cost.timing import Timer

    def once(timer: Timer, module: torch.nn.Module, x: torch.Tensor) -> float:
        return 1e-5 + count(module, x)[0].flops * 1e-9

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Timer, "_once", once)
        yield


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


COMMANDS = {"train_search.py": "darts.app.search", "train_final.py": "darts.app.retrain",  # module -> its command
            **{f"darts.{m}": f"darts.{m}" for m in ("app.search", "app.retrain", "app.protocol", "reporting.report",
                                                      "reporting.draw", "deploy.cli")}}


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    """The working directory ``path`` for the duration."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextmanager
def process_state() -> Iterator[None]:
    """Restore what a command changes process-wide: the random streams, the backend flags, the environment, the
    logging handlers, the thread count (one thread, as the commands run alone in CI)."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    env, root, threads = dict(os.environ), logging.getLogger(), torch.get_num_threads()
    handlers, level = list(root.handlers), root.level
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(flags[0])
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = flags[1:]
        os.environ.clear()
        os.environ.update(env)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        torch.set_num_threads(threads)


def command(script: str, *args: str, cwd: Path = ROOT, check: bool = False) -> subprocess.CompletedProcess:
    """Run a command (train_search.py or darts.app.search, train_final.py, darts.reporting.report...) with its
    arguments in this process, from ``cwd`` (a new Python process costs seconds of imports): its exit status, stdout
    and stderr as a subprocess's."""
    argv = [script, *args]
    module = importlib.import_module(COMMANDS[script])
    out, err, code = io.StringIO(), io.StringIO(), 0
    with process_state(), redirect_stdout(out), redirect_stderr(err), chdir(cwd):
        sys.argv = argv
        try:
            result = module.main()
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
            if not isinstance(exit_.code, int) and exit_.code is not None:
                print(exit_.code, file=sys.stderr)  # as Python prints a sys.exit(message)
    proc = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class Done:
    """A command run to its end in this process, read as a finished ``subprocess.Popen`` with stderr on stdout."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode, self.output = proc.returncode, proc.stdout + proc.stderr

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """(stdout and stderr, None)."""
        return self.output, None

    def poll(self) -> int:
        """The exit status."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status."""
        return self.returncode


def started(script: str, *args: str, cwd: Path = ROOT) -> Done:
    """A command that a test would start in the background, run now in this process (``command``): several such runs
    one after another cost less than as many processes importing torch at once."""
    return Done(command(script, *args, cwd=cwd))


def run_entry(script: str, run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run train_search.py (darts-search) or train_final.py (darts-retrain) in ``run_dir`` with Hydra overrides, in
    this process (``command``)."""
    return command(script, f"hydra.run.dir={run_dir}", "progress=false", *overrides, check=check)


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
