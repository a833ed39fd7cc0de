"""Run-level helpers: device choice, seeding, locating a run to resume."""
from __future__ import annotations

import random
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


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
    """'auto' = bf16 autocast on CUDA and fp32 on CPU (where bf16 convolutions measured slower); else as named."""
    check_precision(precision)
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return PRECISIONS[precision]


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


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    torch.manual_seed(seed)


def find_resume_dir(resume: object, outputs: str | Path, marker: str) -> Path | None:
    """The run directory to continue: a path, or for ``true`` the newest run under ``outputs`` with ``marker``
    and no ``result.json``; None when not resuming."""
    if resume in (None, False, "", "false", "False"):
        return None
    if resume is True or resume in ("true", "True"):
        runs = sorted((p.parent for p in Path(outputs).glob(f"*/*/{marker}") if not (p.parent / "result.json").exists()),
                      key=lambda p: p.stat().st_mtime)
        if not runs:
            raise FileNotFoundError(f"resume=true but no unfinished run (with {marker}) under {outputs}/; "
                                    "pass resume=<run directory>")
        return runs[-1]
    path = Path(str(resume)).expanduser()
    if not (path / marker).is_file():
        raise FileNotFoundError(f"resume={resume!r}: no {marker} in that directory")
    return path
