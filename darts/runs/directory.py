"""The run directory: every file a run writes, written atomically, read back tolerantly, and found again to resume.

One directory per run (Hydra's run directory) holds, whatever the run kind:

- ``config.yaml``: the fully resolved configuration (written by the entry point);
- ``checkpoint.pt``: what resuming needs (atomic; loads with ``weights_only=True``);
- ``*.jsonl``: one JSON record per line, appended as the run goes (a line torn by a kill is dropped on reading);
- ``genotype.txt`` / ``genotype.json``: the final (or retrained) genotype in the space's text and JSON forms;
- ``result.json``: written last, so its presence marks a finished run;
- ``run.lock``: held by the process running it (``darts.runs.lock``);
- TensorBoard event files.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

from darts.runs import checkpoint, lock
from darts.runs.tensorboard_log import TensorBoardLog
from search_spaces.base import SearchSpace

log = logging.getLogger(__name__)
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file and a rename (never a half-written file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a last line cut short (a kill mid-append) is dropped with a warning."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for k, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                log.warning("dropping the incomplete last line of %s", path)
                break
            raise ValueError(f"{path}:{k + 1} is not a JSON record") from None
    return records


class RunDirectory:
    """The files of one run (see the module docstring); ``path`` is created if missing. A reader (``writer=False``:
    a rank other than 0 of a distributed run) reads the files but writes none."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path, self.writer = Path(path), writer
        self.path.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        """Whether the run wrote its result."""
        return (self.path / RESULT).is_file()

    @property
    def has_checkpoint(self) -> bool:
        """Whether a checkpoint was completed (a kill during the first write leaves none)."""
        return (self.path / CHECKPOINT).is_file()

    def locked(self) -> ContextManager:
        """Hold the directory's lock for the duration (a writer only): a second process on it is refused."""
        return lock.locked(self.path) if self.writer else nullcontext()

    def remove_temporary(self) -> None:
        """Delete the temporary files of writes a kill interrupted (``*.tmp``; the files they replace are intact)."""
        if not self.writer:
            return
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT) -> None:
        """Save ``state`` atomically."""
        if self.writer:
            checkpoint.save(state, self.path / name)

    def load_checkpoint(self, name: str = CHECKPOINT) -> dict[str, Any]:
        """Load a checkpoint onto the CPU (tensors and plain containers only)."""
        return checkpoint.load(self.path / name)

    def write_json(self, name: str, data: Any) -> None:
        """Write ``data`` as JSON atomically."""
        if self.writer:
            write_atomic(self.path / name, json.dumps(data, indent=2) + "\n")

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        """Append one record as a line (flushed at once)."""
        if not self.writer:
            return
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """The records of ``name`` (a torn last line dropped)."""
        return read_jsonl(self.path / name)

    def rewrite_jsonl(self, name: str, records: list[dict[str, Any]]) -> None:
        """Replace ``name`` by ``records`` atomically (e.g. the records a resumed run keeps)."""
        if self.writer:
            write_atomic(self.path / name, "".join(json.dumps(r) + "\n" for r in records))

    def write_genotype(self, space: SearchSpace, genotype: Any) -> str:
        """``genotype.txt`` (the space's text) and ``genotype.json``; returns the text."""
        text = space.to_text(genotype)
        if self.writer:
            write_atomic(self.path / "genotype.txt", text + "\n")
            self.write_json("genotype.json", space.to_json(genotype))
        return text

    def write_result(self, result: dict[str, Any]) -> None:
        """``result.json``, the last file a run writes."""
        self.write_json(RESULT, result)

    def tensorboard(self) -> TensorBoardLog:
        """A TensorBoard writer into this directory (one that writes nothing for a reader)."""
        return TensorBoardLog(self.path if self.writer else None)


def find_resume_dir(resume: object, outputs: str | Path) -> Path | None:
    """The run directory to continue: a path holding a run (its ``config.yaml``), or for ``true`` the newest run
    under ``outputs`` with a checkpoint and no ``result.json``; None when not resuming, or for ``auto`` (continue the
    run in the directory the run would use if there is one, else start it: for sweeps, whose job directories are
    named by their overrides)."""
    if resume in (None, False, "", "false", "False", "auto"):
        return None
    if resume is True or resume in ("true", "True"):
        runs = sorted((p.parent for p in Path(outputs).glob(f"*/*/{CHECKPOINT}") if not (p.parent / RESULT).exists()),
                      key=lambda p: p.stat().st_mtime)
        if not runs:
            raise FileNotFoundError(f"resume=true but no unfinished run (with {CHECKPOINT}) under {outputs}/; "
                                    "pass resume=<run directory>")
        return runs[-1]
    path = Path(str(resume)).expanduser()
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"resume={resume!r}: no run in that directory (it has no {CONFIG})")
    return path
