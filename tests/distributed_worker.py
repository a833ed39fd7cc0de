"""Run under torchrun by tests/test_distributed.py: a plan of jobs, one after another in each rank's process (a
torchrun launch costs every rank seconds of imports, so one launch runs them all).

    torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py PLAN.json

A job is ``{"record": OUT_DIR, "overrides": [...]}``: a tiny search on every rank, each arch step recorded (below), or
``{"command": "search" | "retrain", "argv": [...]}``: darts-search / darts-retrain with those arguments, as torchrun
would launch the command itself (with ``"error": FILE``, a command expected to stop: its exit status and message
are written to FILE and the plan goes on).

A record job's rank writes OUT_DIR/rank<r>.pt: the arch parameters after every arch step and, for a first-order DARTS
search, the largest difference between the gradient the step used and the mean of the ranks' local gradients, and the
same for the weights' gradient through the run's DistributedDataParallel wrapper on the step's training batch.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import darts.app.search as train_search  # noqa: E402
from darts.distributed import Distributed, from_environment  # noqa: E402
from darts.training import frozen  # noqa: E402


def mean_difference(dist: Distributed, params: list[torch.Tensor], local: tuple) -> float:
    """The largest difference between the gradients in ``params`` and the mean of the ranks' ``local`` gradients."""
    mean = [dist.sum(torch.zeros_like(p) if g is None else g) / dist.world for p, g in zip(params, local)]
    return max(float(((0 if p.grad is None else p.grad) - m).abs().max()) for p, m in zip(params, mean))


def record(out: Path, overrides: list[str]) -> None:
    """Search with the overrides, recording every arch step of this rank."""
    dist = from_environment()
    with initialize_config_dir(str(ROOT / "darts" / "conf"), version_base="1.3"):
        cfg = compose("search", overrides)
    run = train_search.build(cfg, out / "run", dist)
    strategy, steps, diffs, weight_diffs = run.strategy, [], [], []
    first_order = type(strategy).__name__ == "DARTS" and strategy.order == 1
    arch_step = strategy.arch_step

    def weight_gradient(train, params, optimizer) -> None:
        """Compare the DDP weight gradient on ``train`` with the mean of the ranks' local ones, then clear it."""
        x, y = train
        weights = [p for g in optimizer.param_groups for p in g["params"]]
        with frozen(params):
            local = torch.autograd.grad(strategy.weight_loss(run.supernet(x, strategy.weight_mixing(train)), y),
                                        weights, allow_unused=True)
            optimizer.zero_grad(set_to_none=True)
            strategy.weight_loss(run.weight_model(x, strategy.weight_mixing(train)), y).backward()
        weight_diffs.append(mean_difference(dist, weights, local))
        optimizer.zero_grad(set_to_none=True)

    def recorded(train, valid, optimizer) -> None:
        params = strategy.arch_parameters()
        local = torch.autograd.grad(strategy.arch_loss(valid), params, allow_unused=True) if first_order else None
        arch_step(train, valid, optimizer)
        steps.append([p.detach().clone() for p in params])
        if local is not None:
            diffs.append(mean_difference(dist, params, local))
            weight_gradient(train, params, optimizer)

    strategy.arch_step = recorded
    run.run()
    record = {"steps": steps, "diffs": diffs, "weight_diffs": weight_diffs, "world": dist.world}
    torch.save(record, out / f"rank{dist.rank}.pt")


def main(plan: Path) -> None:
    """Run the plan's jobs in order."""
    for job in json.loads(plan.read_text()):
        if "record" in job:
            record(Path(job["record"]), job["overrides"])
        else:
            sys.argv = [job["command"], *job["argv"]]
            try:
                importlib.import_module(f"darts.app.{job['command']}").main()
            except SystemExit as exit_:
                if "error" not in job:
                    raise
                Path(job["error"]).with_suffix(f".rank{int(os.environ.get('RANK', 0))}").write_text(str(exit_.code))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
