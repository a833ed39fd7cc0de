"""One process per run directory: an exclusive lock held while the run lives.

The lock is ``flock`` on ``run.lock`` in the directory, which names its holder (process, host, start time). A second
process on the same directory is refused with one line naming the holder; the kernel releases the lock when its holder
exits or is killed, so a dead run's directory is taken over by the next ``resume=`` without any clean-up.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK = "run.lock"
_held: dict[Path, int] = {}  # this process's locks: resolved directory -> open file descriptor


def holder(path: Path, wait: float = 1.0) -> str:
    """Who holds the lock on ``path``, as its lock file says (waiting up to ``wait`` seconds for a holder that has
    just taken it to write its name)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = (path / LOCK).read_text().strip()
        except OSError:
            text = ""
        if text or time.monotonic() > deadline:
            return text or "another process"
        time.sleep(0.05)


def acquire(path: str | Path) -> None:
    """Hold the lock on the run directory ``path`` (created if missing) until ``release`` or the process ends; a
    no-op if this process holds it already; ValueError naming the holder if another live process does."""
    path = Path(path).resolve()
    if path in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"{path} is in use by {holder(path)}: one process per run directory; wait for it to end "
                         "(or stop it) before resuming") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
             .encode())
    _held[path] = fd


def release(path: str | Path) -> None:
    """Give up this process's lock on ``path`` (nothing if it holds none)."""
    fd = _held.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the lock on ``path`` for the duration (released after, unless it was held before)."""
    held = Path(path).resolve() in _held
    acquire(path)
    try:
        yield
    finally:
        if not held:
            release(path)
