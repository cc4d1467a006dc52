"""Names and files that come from untrusted input: run directories, result tables, sample lists.

A second lab checks someone else's run directory; that is what the harness is for. So a name taken
from a record, a table or a list is used in a path only when it is one plain path component, a path
only when it stays inside its root, and a file only when it is a regular file (never a FIFO, a
device or a link) of the size its record declares.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if size is not None and info.st_size != size:
            raise RunError(f"{path}: {info.st_size} bytes, but its record says {size}")
        if limit is not None and info.st_size > limit:
            raise RunError(f"{path}: {info.st_size} bytes, more than the {limit} expected of such a file")
        return fh.read()


def open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file (no final link, never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except OSError as exc:
        why = "a link (links are not followed here)" if exc.errno == errno.ELOOP else exc.strerror
        raise RunError(f"{path}: cannot be read: {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(f"{path}: not a regular file")
    return fd


def sha256_regular(path: Path, limit: int) -> str:
    """sha256 of a regular file of at most `limit` bytes, read in chunks (a huge or sparse file is
    refused by its size, never loaded whole)."""
    import hashlib

    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        if size > limit:
            raise RunError(f"{path}: {size} bytes, more than the {limit} a file of a bundle may have")
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


@dataclass(frozen=True)
class Tree:
    """What a folder holds, walked without following links: regular files, and everything else."""
    files: tuple[str, ...]  # relative POSIX paths of regular files
    strange: tuple[str, ...]  # links, FIFOs, devices, sockets: 'path (what)'


def walk_tree(root: Path, max_entries: int = 500_000) -> Tree:
    """Every entry under `root` (os.walk does not follow links, so a linked folder is one strange entry,
    not a walk through the checker's disk); RunError past `max_entries`."""
    files, strange, seen = [], [], 0
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in sorted(dirs + names):
            seen += 1
            if seen > max_entries:
                raise RunError(f"{root}: more than {max_entries} files and folders; not a run or bundle")
            path = base / name
            mode = os.lstat(path).st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISREG(mode):
                files.append(rel)
            elif not stat.S_ISDIR(mode):
                kind = ("a link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
                strange.append(f"{rel} ({kind})")
    return Tree(tuple(sorted(files)), tuple(sorted(strange)))
