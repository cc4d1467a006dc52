"""Names and files that come from untrusted input: run directories, result tables, sample lists.

A second lab checks someone else's run directory; that is what the harness is for. So a name taken
from a record, a table or a list is used in a path only when it is one plain path component, a path
only when it stays inside its root, and a file only when it is a regular file (never a FIFO, a
device or a link) of the size its record declares.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
import re
import stat

from harness.errors import HarnessError, RunError

_SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Ids become file names (`<id>.json`, `<id>-<16 hex>.npy`): well inside the usual 255-byte limit.
MAX_NAME_LENGTH = 200


def name_problem(value: object, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """Why `value` cannot be used as a file name (one path component), or None when it can."""
    if not isinstance(value, str):
        return f"is {type(value).__name__}, not text"
    if len(value) > max_length:
        return f"is {len(value)} characters long; ids become file names, so at most {max_length}"
    if value in (".", "..") or not _SAFE_NAME.fullmatch(value):  # fullmatch: no trailing newline either
        return (f"{value[:60]!r} is not a safe file name (one path component of letters, digits "
                "and . _ + -)")
    return None


def check_name(value: object, where: str, field: str, error: type[HarnessError] = RunError) -> str:
    problem = name_problem(value)
    if problem:
        raise error(f"{where}: field '{field}' {problem}")
    return value  # type: ignore[return-value]


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def inside(root: Path, relative: object, where: str, field: str) -> Path:
    """`root/relative`, refused unless `relative` is a relative path that stays inside `root`
    (also after resolving links)."""
    if not isinstance(relative, str) or not relative:
        raise RunError(f"{where}: field '{field}' is empty or not text")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or "\\" in relative or any(c < " " for c in relative):
        raise RunError(f"{where}: field '{field}' {relative[:80]!r} leaves its directory")
    path = Path(root) / rel
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise RunError(f"{where}: field '{field}' {relative[:80]!r} leads outside {root} (through a link)")
    return path


def check_run_folders(run_dir: Path, folders: tuple[str, ...] = ("records", "bitstreams", "predictions", "logs",
                                                                   "report")) -> None:
    """Refuse a run directory whose folders are links leading out of it: the harness would write
    (predictions, records, reports) or read (bitstreams) somewhere the run does not own."""
    root = Path(run_dir).resolve()
    for name in folders:
        folder = Path(run_dir) / name
        if (folder.is_symlink() or folder.exists()) and not folder.resolve().is_relative_to(root):
            raise RunError(f"{folder}: a link leading outside the run directory ({folder.resolve()}); "
                           "replace it with a real folder")


def read_regular(path: Path, size: int | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file: never follows a final link, never blocks on a FIFO, and checks
    the size (exact `size`, or at most `limit`) before reading anything."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except OSError as exc:
        why = "a link (links are not followed here)" if exc.errno == errno.ELOOP else exc.strerror
        raise RunError(f"{path}: cannot be read: {why}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunError(f"{path}: not a regular file")
        if size is not None and info.st_size != size:
            raise RunError(f"{path}: {info.st_size} bytes, but its record says {size}")
        if limit is not None and info.st_size > limit:
            raise RunError(f"{path}: {info.st_size} bytes, more than the {limit} expected of such a file")
        return fh.read()
