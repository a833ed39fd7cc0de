"""Run under torchrun by tests/test_distributed.py: a tiny search on every rank, each arch step recorded.

    torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py OUT_DIR [override ...]

Each rank writes OUT_DIR/rank<r>.pt: the arch parameters after every arch step and, for a first-order DARTS search,
the largest difference between the gradient the step used and the mean of the ranks' local gradients.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train_search  # noqa: E402
from darts.distributed import from_environment  # noqa: E402


def main(out: Path, overrides: list[str]) -> None:
    """Search with the overrides, recording every arch step of this rank."""
    dist = from_environment()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("search", overrides)
    run = train_search.build(cfg, out / "run", dist)
    strategy, steps, diffs = run.strategy, [], []
    first_order = type(strategy).__name__ == "DARTS" and strategy.order == 1
    arch_step = strategy.arch_step

    def recorded(train, valid, optimizer) -> None:
        params = strategy.arch_parameters()
        local = torch.autograd.grad(strategy.arch_loss(valid), params, allow_unused=True) if first_order else None
        arch_step(train, valid, optimizer)
        steps.append([p.detach().clone() for p in params])
        if local is not None:
            mean = [dist.sum(torch.zeros_like(p) if g is None else g) / dist.world for p, g in zip(params, local)]
            diffs.append(max(float(((0 if p.grad is None else p.grad) - m).abs().max()) for p, m in zip(params, mean)))

    strategy.arch_step = recorded
    run.run()
    torch.save({"steps": steps, "diffs": diffs, "world": dist.world}, out / f"rank{dist.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
