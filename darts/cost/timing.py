"""How a latency table times a module: inference (eval mode, no grad) on one device, the median of repeated forward
passes after warm-up; on CPU with a fixed number of threads (``torch.set_num_threads``), on CUDA with
``torch.cuda.synchronize`` before and after each pass (kernels run asynchronously: an unsynchronised clock reads
the launch, not the work). Several modules are timed round-robin (``Timer.each``).

The defaults are one image (batch size 1) and one CPU thread: the latency a budget stands for is the time to
classify one image on the target device, and a single thread is the setting least disturbed by other work on the
machine and the same on every machine. A larger batch measures throughput rather than latency; ``--batch`` and
``--threads`` set both, and both go into the table's key."""
from __future__ import annotations

import copy
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from darts.context import pick_device
from darts.settings import integer


def device_name(device: torch.device) -> str:
    """The processor a table is measured on: the CPU model (/proc/cpuinfo ``model name``) or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration (None: leave it), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Timer:
    """Median milliseconds of a module's forward pass on ``device`` at batch size ``batch``.

    Args:
        device: cpu, cuda or cuda:i.
        threads: CPU threads during the timing (``torch.set_num_threads``); None on CUDA.
        batch: the batch size B of the timed input (B, C, H, W).
        repeats: timed passes; their median is the latency.
        warmup: untimed passes first (caches, allocator, cuDNN's algorithm choice).
    """

    device: torch.device
    threads: int | None = 1
    batch: int = 1
    repeats: int = 50
    warmup: int = 5

    @classmethod
    def of(cls, device: str = "cpu", threads: int | None = None, batch: int = 1, repeats: int = 50,
           warmup: int = 5) -> Timer:
        """A checked timer: ``device`` cpu or cuda[:i] (auto: cuda if present); ``threads`` >= 1 on CPU (None: 1; CUDA
        takes none); ``batch`` and ``repeats`` >= 1, ``warmup`` >= 0."""
        dev = pick_device(device)
        if dev.type == "cuda" and threads is not None:
            raise ValueError(f"threads={threads} applies to the CPU only; leave it out for device={device!r}")
        if dev.type == "cpu":
            threads = 1 if threads is None else threads
            integer("threads", threads, 1)
        integer("batch", batch, 1)
        integer("repeats", repeats, 1)
        integer("warmup", warmup, 0)
        return cls(dev, threads, batch, repeats, warmup)

    def _place(self, module: nn.Module) -> nn.Module:
        """The module in eval mode on the timer's device (a copy off the CPU: the caller's stays where it is)."""
        return (module if self.device.type == "cpu" else copy.deepcopy(module).to(self.device)).eval()

    def _once(self, module: nn.Module, x: torch.Tensor) -> float:
        """Seconds of one forward pass, synchronised before and after on CUDA."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        module(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    @torch.no_grad()
    def each(self, items: Sequence[tuple[nn.Module, tuple[int, ...]]], bar: tqdm | None = None) -> list[float]:
        """Median ms of each module's forward pass on a random input of its shape (B replacing the batch size), timed
        round-robin: every repeat times each module once, so that a change of the machine's load during the
        measurement touches all of them alike, and each runs with the others' weights passing through the caches
        between its passes, as inside a network. ``bar`` advances by one per pass."""
        placed = [(self._place(m), torch.randn(self.batch, *shape[1:], device=self.device)) for m, shape in items]
        times: list[list[float]] = [[] for _ in placed]
        with fixed_threads(self.threads):
            for module, x in placed:
                for _ in range(self.warmup):
                    module(x)
            for _ in range(self.repeats):
                for t, (module, x) in zip(times, placed):
                    t.append(self._once(module, x))
                if bar is not None:
                    bar.update(len(placed))
        return [1e3 * statistics.median(t) for t in times]
