"""How a latency table times a module: inference (eval mode, no grad) on one device, the median of repeated forward
passes after warm-up; on CPU with a fixed number of threads (``torch.set_num_threads``), on CUDA with
``torch.cuda.synchronize`` before and after each pass (kernels run asynchronously: an unsynchronised clock reads
the launch, not the work)."""
from __future__ import annotations

import copy
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

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

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def __call__(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        """Median ms of ``module(x)``, x random of ``shape`` (any batch size: B replaces it), over the repeats."""
        if self.device.type != "cpu":
            module = copy.deepcopy(module).to(self.device)  # the caller's module stays where it is
        module.eval()
        x = torch.randn(self.batch, *shape[1:], device=self.device)
        times = []
        with fixed_threads(self.threads):
            for _ in range(self.warmup):
                module(x)
            for _ in range(self.repeats):
                self._sync()
                start = time.perf_counter()
                module(x)
                self._sync()
                times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)
