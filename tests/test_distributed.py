"""One search or retraining on two processes (torchrun, gloo on CPU), a tiny network on real images: the arch
parameters are the same on both ranks after every step, the arch gradient is the mean of the ranks' gradients,
rank 0 alone writes, and a run stopped and resumed under torchrun ends as the uninterrupted one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT, read_json

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A script on two processes; fails with each rank's own output (torchrun's --redirects) if they fail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as logs:
        proc = subprocess.run([*TORCHRUN, "--log-dir", logs, "--redirects", "3", str(ROOT / script), *args], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=600)
        ranks = "".join(f"\n--- {p.relative_to(logs)}:\n{p.read_text()[-3000:]}"
                        for p in sorted(Path(logs).rglob("std*.log")))
    assert proc.returncode == 0, proc.stderr[-2000:] + ranks
    return proc


def tiny(cifar_mini: Path) -> list[str]:
    """A 3-cell (normal, reduce, reduce), 4-channel DARTS supernet on cifar10-mini, 2 epochs of 2 steps, batch 8 per
    rank."""
    return ["dataset=imagefolder", f"dataset.root={cifar_mini}", "model.layers=3", "model.init_channels=4",
            "epochs=2", "steps_per_epoch=2", "batch_size=8", "progress=false", "device=cpu"]


PROGRESSIVE = ["strategy=drnas", "strategy.progressive=true", "strategy.arch_start_epoch=0",
               "strategy.stages=[{epochs:1,partial_channels:4},{epochs:1,partial_channels:2,keep_ops:3}]"]


STRATEGIES = {"darts-1st": ["strategy=darts", "memory.checkpoint=cells"],  # each cell recomputed in backward
              "darts-2nd": ["strategy=darts", "strategy.order=2"],
              "gdas": ["strategy=gdas"],
              "pcdarts": ["strategy=pcdarts", "strategy.arch_start_epoch=0", "strategy.partial_channels=2"],
              "drnas-progressive": PROGRESSIVE}


def plan(path: Path, jobs: list[dict]) -> Path:
    """A plan of jobs for tests/distributed_worker.py."""
    path.write_text(json.dumps(jobs))
    return path


@pytest.fixture(scope="module")
def recorded(cifar_mini, tmp_path_factory) -> Path:
    """Every strategy's tiny search on two ranks, each arch step recorded (one torchrun launch)."""
    root = tmp_path_factory.mktemp("recorded")
    jobs = [{"record": str(root / name), "overrides": [*tiny(cifar_mini), *strategy]}
            for name, strategy in STRATEGIES.items()]
    torchrun("tests/distributed_worker.py", str(plan(root / "plan.json", jobs)))
    return root


@pytest.mark.parametrize("name", STRATEGIES)
def test_arch_parameters_stay_identical_on_every_rank(recorded, name):
    """After every arch step both ranks hold the same arch parameters (bitwise), for a first-order, a second-order, a
    sampling and a partial-channel strategy, and across DrNAS's progressive stages (pruned, widened, DDP rewrapped);
    for first-order DARTS (with the cells recomputed in backward too) the gradient the arch step used, and the weights' gradient through DistributedDataParallel,
    are the means of the two ranks' local gradients; the run directory holds one set of outputs."""
    tmp_path, strategy = recorded / name, STRATEGIES[name]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == 4
    for a, b in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(ranks[0]["steps"][0][0], ranks[0]["steps"][-1][0])  # the alphas do move
    if name.startswith("darts-1st"):
        assert len(ranks[0]["diffs"]) == 4 and max(ranks[0]["diffs"]) < 1e-7
        assert len(ranks[0]["weight_diffs"]) == 4 and max(ranks[0]["weight_diffs"]) < 1e-6
    run = tmp_path / "run"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and (run / "result.json").is_file()
    assert [json.loads(line)["epoch"] for line in (run / "genotypes.jsonl").read_text().splitlines()] == [0, 1]


def history(run: Path) -> list[dict]:
    """genotypes.jsonl without wall times."""
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_time"}
            for line in (run / "genotypes.jsonl").read_text().splitlines()]


def same_checkpoint(a: Path, b: Path, key: str) -> bool:
    """Whether two checkpoints hold bitwise the same ``key`` state dict and per-rank random states."""
    x, y = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (a, b))
    states = all(torch.equal(x[key][k], y[key][k]) for k in x[key])
    rng = all(torch.equal(r["cpu"], s["cpu"]) for r, s in zip(x["rng"], y["rng"])) and len(x["rng"]) == 2
    return states and rng


@pytest.fixture(scope="module")
def resumed(cifar_mini, tmp_path_factory) -> Path:
    """On two ranks (one torchrun launch): a 2-epoch search and a 1-epoch one resumed to 2 epochs (GDAS); a 3-epoch
    retraining and a 1-epoch one resumed to 3 (DARTS_V2 with drop path)."""
    root = tmp_path_factory.mktemp("resumed")
    search = [*tiny(cifar_mini), "strategy=gdas"]
    retrain = ["genotype=DARTS_V2", "dataset=imagefolder", f"dataset.root={cifar_mini}", "model.layers=3",
               "model.init_channels=4", "steps_per_epoch=2", "batch_size=8", "progress=false", "device=cpu",
               "memory.checkpoint=cells"]  # drop-path masks replayed in the recomputed cells
    jobs = [{"command": "search", "argv": [*search, f"hydra.run.dir={root / 'search-full'}"]},
            {"command": "search", "argv": [*(a for a in search if not a.startswith("epochs")), "epochs=1",
                                           f"hydra.run.dir={root / 'search-cut'}"]},
            {"command": "search", "argv": [f"resume={root / 'search-cut'}", "epochs=2"]},
            {"command": "retrain", "argv": [*retrain, "epochs=3", f"hydra.run.dir={root / 'retrain-full'}"]},
            {"command": "retrain", "argv": [*retrain, "epochs=1", f"hydra.run.dir={root / 'retrain-cut'}"]},
            {"command": "retrain", "argv": [f"resume={root / 'retrain-cut'}", "epochs=3"]},
            {"command": "search", "argv": ["search_space=toy", "strategy=random", "evaluator=train", "dataset=fake",
                                           "progress=false", f"hydra.run.dir={root / 'discrete'}"],
             "error": str(root / "discrete.exit")}]
    torchrun("tests/distributed_worker.py", str(plan(root / "plan.json", jobs)))
    return root


def test_a_search_stopped_and_resumed_under_torchrun_ends_as_the_uninterrupted_one(resumed):
    """Two processes: a 2-epoch search equals a 1-epoch search resumed to 2 epochs (history, weights, every rank's
    random state), both under torchrun (rank 0 writes the run directory, every rank resumes from it)."""
    tmp_path = resumed
    (tmp_path / "full").symlink_to(tmp_path / "search-full")
    (tmp_path / "cut").symlink_to(tmp_path / "search-cut")
    assert history(tmp_path / "cut") == history(tmp_path / "full")
    assert same_checkpoint(tmp_path / "cut", tmp_path / "full", "supernet")
    assert read_json(tmp_path / "cut" / "result.json")["genotype"] == read_json(tmp_path / "full" / "result.json")["genotype"]


def test_a_retraining_stopped_and_resumed_under_torchrun_ends_as_the_uninterrupted_one(resumed):
    """Two processes retrain a tiny DARTS_V2 network with drop path (random masks on each rank): 3 epochs equal 1
    epoch resumed to 3 (epoch 0's learning rate and drop path do not depend on the total), with one set of outputs."""
    tmp_path = resumed / "retrain"
    tmp_path.mkdir()
    (tmp_path / "full").symlink_to(resumed / "retrain-full")
    (tmp_path / "cut").symlink_to(resumed / "retrain-cut")
    full, cut = read_json(tmp_path / "full" / "result.json"), read_json(tmp_path / "cut" / "result.json")
    assert cut == full
    assert same_checkpoint(tmp_path / "cut", tmp_path / "full", "model")
    assert len(list((tmp_path / "full").glob("events.out.tfevents.*"))) == 1


def test_a_discrete_search_refuses_torchrun(resumed):
    """A discrete search under torchrun stops on every rank: rank 0 with one line pointing at evaluator.workers, the
    other rank with status 1 (rank 0 speaks for the job)."""
    message = (resumed / "discrete.rank0").read_text()
    assert "evaluator.workers" in message and "\n" not in message.strip()
    assert (resumed / "discrete.rank1").read_text() == "1"


def test_concurrent_candidates_spread_over_the_gpus():
    """evaluator=train with several workers on a CUDA search trains candidate i on GPU i mod GPUs; on one GPU, on the
    CPU or with one worker, every candidate on the search's device."""
    from darts.evaluators.train import candidate_devices

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert candidate_devices(cuda, 4, 2) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert candidate_devices(cuda, 1, 2) == [cuda] and candidate_devices(cuda, 4, 1) == [cuda]
    assert candidate_devices(cpu, 4, 2) == [cpu]
