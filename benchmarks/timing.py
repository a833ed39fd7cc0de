"""How the benchmarks measure: wall time per step, peak memory above a start, and the environment.

Step time: wall seconds of each step, CUDA synchronised before and after. Peak memory: on CUDA the peak of
``torch.cuda.max_memory_allocated`` above the allocation at the start (network, optimizer, resident data,
activations); on CPU the peak resident set size (VmHWM, reset through /proc/self/clear_refs) above the RSS at the
start, DataLoader workers not included, and only in a process of its own, as memory an earlier measurement freed
would otherwise hide the next one's.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]


def _proc_kb(key: str) -> int:
    """A /proc/self/status field in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


class PeakMemory:
    """Peak memory of a variant above the memory in use at its start (see the module docstring)."""

    def __init__(self, device: torch.device, isolated: bool):
        self.device, self.cpu = device, device.type != "cuda"
        self.method = ("cuda max_memory_allocated" if not self.cpu else
                       "peak RSS (VmHWM) of the process" if isolated and os.path.exists("/proc/self/clear_refs")
                       else None)
        if self.method:
            gc.collect()  # free what earlier variants left, so that it is not counted (nor reused unseen)
        if not self.cpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            self.start = torch.cuda.memory_allocated(device)
        elif self.method:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.start = _proc_kb("VmRSS") * 1024

    def peak_mb(self) -> float | None:
        """Peak bytes above the start, in MiB (None when not measurable in this mode)."""
        if not self.method:
            return None
        peak = torch.cuda.max_memory_allocated(self.device) if not self.cpu else _proc_kb("VmHWM") * 1024
        return (peak - self.start) / 2**20


def in_fresh_process(module: str, argv: list[str]) -> dict[str, Any]:
    """Run ``python -m module *argv`` and return the JSON object it prints last, or an error row (exit code, stderr tail)."""
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"status": "error", "reason": f"exit {proc.returncode}: {tail}"}


def time_steps(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> tuple[list[float], float]:
    """Wall seconds of each timed step (synchronised on CUDA) and of the warm-up steps together."""
    sync = partial(torch.cuda.synchronize, device) if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm = time.perf_counter() - start
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times, warm


def spread(ips: list[float]) -> dict[str, float]:
    """Median, min, max and quartiles of images/s."""
    q1, _, q3 = statistics.quantiles(ips, n=4, method="inclusive") if len(ips) > 1 else (ips[0],) * 3
    return {"median": statistics.median(ips), "min": min(ips), "max": max(ips), "q1": q1, "q3": q3}


def environment(device: torch.device) -> dict[str, Any]:
    """Device, versions, date, load and commit: what a figure needs to be compared."""
    env: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
                           "torch": torch.__version__, "torchvision": torchvision.__version__, "platform": platform.platform(),
                           "device": device.type, "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), gpu_memory_gb=torch.cuda.get_device_properties(device).total_memory / 2**30)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    env["commit"] = git.stdout.strip() or None
    return env


def _cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()
