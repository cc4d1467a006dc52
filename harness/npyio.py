"""Safe reading and atomic writing of files.

Features are read with `allow_pickle=False`, always: a pickled object array is
code, not data. Every failure names the file and says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import contextlib
import io
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import tempfile
from typing import Any

import numpy as np

from harness.errors import FeatureError, HarnessError, OutputError, TableError

MAX_TABLE_BYTES = 512 << 20  # a results or metrics table of the paper CTC is well under 10 MB


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int


def read_npy_header(path: str | Path) -> NpyHeader:
    """Read and check a .npy header without loading data: refuses object arrays and truncation."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except FileNotFoundError:
        raise FeatureError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as exc:
        raise FeatureError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype.hasobject:
        raise FeatureError(f"{path}: holds a pickled object array ({dtype}); "
                           "features must be plain numeric arrays (pickle is never loaded)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise FeatureError(f"{path}: not a readable .npy file (header shape {shape})")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: an absurd shape cannot wrap around
    available = path.stat().st_size - offset
    if available < expected:
        raise FeatureError(f"{path}: truncated .npy: header says {shape} {dtype} "
                           f"({expected} bytes of data), file has {available}")
    return NpyHeader(tuple(shape), dtype, bool(fortran), offset)


def load_npy(path: str | Path) -> np.ndarray:
    """Load a .npy file without pickle; clear errors for truncated or object files."""
    header = read_npy_header(path)
    count = math.prod(header.shape)
    try:
        with Path(path).open("rb") as fh:
            fh.seek(header.offset)
            array = np.fromfile(fh, dtype=header.dtype, count=count)
    except (ValueError, OSError) as exc:
        raise FeatureError(f"{path}: cannot read .npy data ({exc})") from None
    if array.size != count:
        raise FeatureError(f"{path}: truncated .npy data")
    if header.fortran:
        return array.reshape(header.shape[::-1]).transpose()
    return array.reshape(header.shape)


def check_finite(array: np.ndarray, path: str | Path) -> None:
    """Raise naming the file and the count of NaN/Inf values, if any."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise FeatureError(f"{path}: contains non-finite values ({nan} NaN, {inf} Inf)")


def read_csv_checked(path: str | Path, what: str, required: Iterable[str] = (),
                     numeric: Mapping[str, Iterable[str]] | Iterable[str] = ()) -> Any:
    """A CSV table the harness reads back (results, metrics, anchors) as a DataFrame, or one
    TableError naming the file: not a table, a required column missing, or a non-number in a
    `numeric` column (a mapping may allow some words there, e.g. {"rate_point": ["orig"]})."""
    import pandas as pd

    from harness.safe_io import read_regular

    if not Path(path).exists() and not Path(path).is_symlink():
        raise TableError(f"{path}: file not found")
    try:  # a regular file of bounded size (never a FIFO or a link), then parsed from memory
        raw = read_regular(Path(path), limit=MAX_TABLE_BYTES)
    except HarnessError as exc:
        raise TableError(str(exc)) from None
    try:
        frame = pd.read_csv(io.BytesIO(raw), float_precision="round_trip")  # the written floats, exactly
    except (ValueError, OSError) as exc:  # parser errors, empty file, not UTF-8 text
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"{path}: not a readable {what} ({reason})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: not a {what}: no column {', '.join(map(repr, missing))}")
    words = numeric if isinstance(numeric, Mapping) else dict.fromkeys(numeric, ())
    for column, allowed in words.items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna() & ~frame[column].astype(str).isin(list(allowed))
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise TableError(f"{path}: column {column!r}, line {row + 2}: {frame[column].iloc[row]!r} is not a number")
        if not allowed:
            frame[column] = values
    return frame


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    _atomic(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    _atomic(Path(path), lambda fh: np.save(fh, array, allow_pickle=False))


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    """Write through a temp file in the same folder, then rename; any OSError (disk full,
    read-only, permission) becomes one OutputError naming the file, leaving no temp file."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600 whatever the umask
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
