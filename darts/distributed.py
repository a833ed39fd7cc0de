"""One run on several processes, launched by ``torchrun`` (``torch.distributed``: NCCL on GPUs, gloo on CPU).

Every rank builds the same model from the same seed and runs on its shard of the data. The weights are trained
through DistributedDataParallel (``wrap``), which averages their gradients over the ranks during the backward pass;
the arch parameters, which DDP does not manage, have their gradients averaged by ``mean_grads`` before every rank
takes the same arch step. So the weights and arch parameters stay identical everywhere. Rank 0 alone writes the run
directory; every rank reads it to resume.
"""
from __future__ import annotations

import atexit
import inspect
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world`` processes (1 = not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's equal share of ``indices`` (strided; the remainder beyond a multiple of ``world`` dropped, so
        that every rank takes the same number of steps)."""
        if self.world == 1:
            return indices
        return indices[: len(indices) // self.world * self.world][self.rank::self.world]

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` under DistributedDataParallel (itself in a single process): a backward pass through the wrapper's
        forward averages the gradients of the parameters that require one *now* (freeze the arch parameters before
        wrapping to leave them to ``mean_grads``); ``find_unused_parameters`` where a forward leaves some without a
        gradient. Buffers are not synced at every forward (training-mode BN uses batch statistics; the runs copy rank
        0's after each epoch)."""
        if self.world == 1:
            return module
        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=find_unused_parameters, **_NO_FORWARD_BUFFER_SYNC)

    def mean_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over the ranks (one all-reduce); a parameter without a gradient on any
        rank keeps none (as a single process's SGD skips it), one with a gradient somewhere gets the mean, counting
        zeros where a rank had none (a sampled path not taken there)."""
        if self.world == 1:
            return
        device = params[0].device
        present = torch.tensor([p.grad is not None for p in params], device=device, dtype=torch.float32)  # [P]
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        used = [p for p, flag in zip(params, present.tolist()) if flag]
        if not used:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in used])
        dist.all_reduce(flat)
        flat /= self.world
        for p, part in zip(used, flat.split([p.numel() for p in used])):
            p.grad = part.view_as(p).clone()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``values`` over the ranks."""
        if self.world > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Copy rank 0's ``tensors`` (parameters, BN statistics) to every rank, in place."""
        if self.world > 1:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj``, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Distributed()
# torch >= 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers (the old name warns)
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})


def from_environment() -> Distributed:
    """The process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joined with NCCL when CUDA
    is available (each rank on GPU ``LOCAL_RANK``) and gloo otherwise; a single process outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
        # left at exit: a process group still alive when the interpreter tears down can abort the process
        # (std::terminate on a joinable communication thread: seen once in ~10 gloo runs)
        atexit.register(_leave)
    return Distributed(dist.get_rank(), dist.get_world_size())


def _leave() -> None:
    """Destroy this process's group, if it is still alive."""
    if dist.is_initialized():
        dist.destroy_process_group()
