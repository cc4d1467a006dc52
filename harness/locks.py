"""Advisory locks on files (fcntl.flock), released by the kernel when the holder dies.

Used for a run directory (two runs sharing one --out) and for the staging folder of a
dataset build (a killed build's folder is recognised and removed by the next build).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import fcntl
import os
from pathlib import Path


class Locked(Exception):
    """Another live process holds the lock; `pid` is what it wrote in the lock file (or None)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path}: held by {'process ' + str(pid) if pid else 'another process'}")
        self.path, self.pid = path, pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing, our pid written in it) for the block;
    raise `Locked` at once if a live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(path, _read_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (False when there is no such file)."""
    try:
        with exclusive(path):
            return False
    except Locked:
        return True
    except FileNotFoundError:
        return False
