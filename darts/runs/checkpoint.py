"""Atomic checkpoints: write to a temporary file, then rename over the target."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def save(state: dict[str, Any], path: str | Path) -> None:
    """Save ``state`` to ``path`` atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only), onto the CPU by default:
    each object copies its state to its own device (``load_state_dict``), random states restore where they came from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated zip, garbage, or objects weights_only refuses
        cause = " ".join(str(err).split())[:200]
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}: {cause}); it is corrupt or "
                         "not from this project: restore it from a copy, or delete it to start the run over") from None


def rng_state() -> dict[str, Any]:
    """The torch CPU (and CUDA, when present) random states."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | list[dict[str, Any]], rank: int = 0) -> None:
    """Restore what ``rng_state`` returned (or, from a list of every rank's, this ``rank``'s), each state where it came
    from: the CPU's on the CPU (whatever device the checkpoint was loaded onto), each GPU's on that GPU; a GPU that is
    not visible now keeps a fresh state (warned), as does a rank the checkpoint has no state for."""
    if isinstance(state, list):
        if rank >= len(state):
            log.warning("the checkpoint holds the random states of %d ranks, not of rank %d: it keeps a fresh state",
                        len(state), rank)
            return
        state = state[rank]
    torch.set_rng_state(state["cpu"].cpu())
    saved = state.get("cuda", [])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, gpu_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(gpu_state.cpu(), index)
    if len(saved) > visible:
        log.warning("the checkpoint holds random states of %d GPUs but %d are visible: GPUs %d.. keep fresh states, "
                    "so the resumed run is not bitwise equal to an uninterrupted one", len(saved), visible, visible)
