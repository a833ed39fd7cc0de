"""The execution context of a run (device, precision, memory format, fast path, compile, ranks, progress) and
seeding."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from darts.distributed import SINGLE, Distributed

DEVICES = ("auto", "cpu", "cuda")
# precision -> autocast dtype (None = none). fp32 is IEEE fp32 (TF32 off); tf32 lets cuDNN and cuBLAS use TF32 for fp32
# convolutions and matmuls on Ampere and newer GPUs (PyTorch's default for cuDNN convolutions); bf16 is autocast.
PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16}


def pick_device(name: str) -> torch.device:
    """'auto' is cuda when available, else cpu; 'cuda[:i]' fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in DEVICES[1:]:
        raise ValueError(f"device={name!r} is not valid; choose one of {DEVICES} (or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device=cpu or device=auto")
    return torch.device(name)


def check_precision(precision: str) -> None:
    """Raise a clear error unless precision is 'auto' or one of PRECISIONS."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; choose one of {('auto', *PRECISIONS)}")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """'auto' = fp32 on every device: the papers' numerics (no GPU measurement has yet shown that bf16 finds the same
    genotypes and retraining accuracy, README Reliability); else as named (bf16 = autocast, one override away;
    tf32 autocasts nothing: see ``configure_backends``)."""
    check_precision(precision)
    return None if precision == "auto" else PRECISIONS[precision]


def autocast(device_type: str, amp: torch.dtype | None) -> torch.autocast:
    """Autocast to ``amp`` on the device type; disabled (fp32) when it is None."""
    return torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None)


def use_channels_last(setting: bool | str, device: torch.device, amp: torch.dtype | None = None) -> bool:
    """'auto' = channels_last on CPU in fp32, where it measured 1.5-2.3x faster (README, Speed), contiguous on
    CUDA (not measured there yet). bf16 + channels_last on CPU is refused: oneDNN (torch 2.15) returns weight
    gradients ~99% wrong for dilated depthwise convs in that combination (README, Speed)."""
    cpu_bf16 = device.type == "cpu" and amp is not None
    if setting == "auto":
        return device.type == "cpu" and not cpu_bf16
    if not isinstance(setting, bool):
        raise ValueError(f"channels_last={setting!r} is not valid; choose one of ('auto', True, False)")
    if setting and cpu_bf16:
        raise ValueError("channels_last=true with precision=bf16 on CPU gives wrong gradients for dilated depthwise "
                         "convs (oneDNN); choose channels_last=false (or auto) or precision=fp32")
    return setting


def set_tf32(allowed: bool) -> None:
    """Let (or forbid) cuDNN convolutions and cuBLAS matmuls compute fp32 in TF32 (Ampere and newer GPUs)."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """TF32 off for the duration, the previous settings restored after: for computations whose finite differences
    cancel (DARTS's unrolled step), where TF32's 10-bit mantissa measured 11-34% off the float64 hypergradient."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def configure_backends(precision: str, deterministic: bool) -> None:
    """Process-wide numerics of a run: TF32 only for ``precision=tf32`` (fp32 means IEEE fp32; PyTorch's default lets
    cuDNN use TF32); ``deterministic``: PyTorch's deterministic algorithms (cuDNN's included, and the cuBLAS workspace
    CUDA needs) for bitwise-repeatable GPU runs, else cuDNN autotuning (``cudnn.benchmark``, as DARTS's scripts)."""
    check_precision(precision)
    set_tf32(precision == "tf32")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call (PyTorch docs)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    torch.manual_seed(seed)


CHECKPOINTS = ("none", "norms", "cells")  # recomputation in backward, each level including the one before (Context)
_EXACT: ContextVar[bool] = ContextVar("exact", default=False)  # inside Context.exact(): IEEE fp32, no autocast


@dataclass(frozen=True)
class Context:
    """Where and how a run computes, given to what it builds (runs, strategies, evaluators, networks) once, when they
    are built; nothing changes it afterwards.

    Args:
        device: where parameters and batches live.
        amp_dtype: autocast dtype of the forward pass (None = fp32); parameters and optimizers stay fp32.
        channels_last: NHWC memory format for parameters and inputs.
        fast: the supernet's fast path (``darts.supernet.MixedOp``); False = the reference's computation.
        compile: ``torch.compile`` the module.
        dist: this process's place among the ranks of a torchrun run (``darts.distributed``).
        progress: progress bars (shown on rank 0 only); off unless asked for (the commands' ``progress=true``).
        checkpoint: what the supernet recomputes in backward instead of keeping (``darts.checkpointing``): ``none``;
            ``norms`` (default), the mixed ops' last affine-free batch norms; ``cells``, besides, every search cell
            (activation checkpointing: one more cell forward per backward).
    """

    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    fast: bool = True
    compile: bool = False
    dist: Distributed = SINGLE
    progress: bool = False
    checkpoint: str = "norms"

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINTS:
            raise ValueError(f"memory.checkpoint={self.checkpoint!r} is not valid; choose one of {', '.join(CHECKPOINTS)}")

    @classmethod
    def of(cls, device: str = "auto", precision: str = "auto", channels_last: bool | str = "auto", fast: bool = True,
           compile: bool = False, dist: Distributed = SINGLE, progress: bool = False,
           checkpoint: str = "norms") -> Context:
        """The context the configuration's values name (``device``, ``precision``, ``channels_last``: see the docs)."""
        dev = pick_device(device)
        amp = amp_dtype(precision, dev)
        return cls(dev, amp, use_channels_last(channels_last, dev, amp), fast, compile, dist, progress, checkpoint)

    @property
    def bars(self) -> bool:
        """Whether this process shows progress bars (asked for, and rank 0)."""
        return self.progress and self.dist.main

    @property
    def recompute_norms(self) -> bool:
        """Whether mixed ops recompute their last affine-free batch norms in backward (``norms`` and ``cells``)."""
        return self.checkpoint != "none"

    @property
    def checkpoint_cells(self) -> bool:
        """Whether search cells are recomputed in backward (``cells``)."""
        return self.checkpoint == "cells"

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last or contiguous."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> torch.autocast:
        """Autocast to ``amp_dtype`` on the device (disabled for fp32, and inside ``exact``)."""
        return autocast(self.device.type, None if _EXACT.get() else self.amp_dtype)

    @contextmanager
    def exact(self) -> Iterator[None]:
        """IEEE fp32 for the duration: no autocast, no TF32 (``ieee_fp32``), for computations whose finite differences
        cancel (DARTS's unrolled step measured 53-65% off the float64 hypergradient under bf16 autocast)."""
        token = _EXACT.set(True)
        try:
            with ieee_fp32():
                yield
        finally:
            _EXACT.reset(token)

    def place(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the device and memory format, compiled when asked; returns it."""
        module.to(self.device, memory_format=self.memory_format)
        if self.compile:
            module.compile()
        return module
