"""sha256 of feature files, remembered by size and modification time.

A run is resumed only with the features it was coded from: each job's record carries its feature's
sha256, and a feature whose content changed (even to one of the same size) makes exactly its own
jobs run again. Hashing a paper-size dataset takes a while, so digests are kept in one small JSON
file in the harness cache, keyed by the file's absolute path and trusted only while its size and
mtime (in nanoseconds) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.npyio import atomic_write_json

CHUNK = 8 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class FeatureHashes:
    """`digest(path)`: a feature file's sha256, from the cache while its size and mtime hold."""

    def __init__(self, store: Path | None) -> None:
        self.store = store
        self._entries: dict[str, list] = {}
        self._dirty = False
        if store is not None:
            try:
                loaded = json.loads(Path(store).read_text(encoding="utf-8"))
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a missing or damaged cache is only slower

    def digest(self, path: Path) -> str:
        key = os.path.abspath(path)
        info = os.stat(key)
        entry = self._entries.get(key)
        # ctime and inode too: a file replaced by another of the same size with its mtime set back
        # (cp -p, touch -r) gets a new ctime, which no user call can set
        stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        if (isinstance(entry, list) and len(entry) == 5 and entry[:4] == stamp
                and isinstance(entry[4], str) and len(entry[4]) == 64):
            return entry[4]
        value = file_sha256(Path(key))
        self._entries[key] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Keep the digests for the next run; a cache that cannot be written only costs time."""
        if self.store is None or not self._dirty:
            return
        try:
            atomic_write_json(self.store, self._entries)
            self._dirty = False
        except Exception:  # noqa: BLE001 - never fail a run over its speed-up
            pass


def content_fingerprint(digests: dict[str, str]) -> str:
    """One sha256 over `id sha256` lines in id order: a task's data content, for provenance."""
    text = "".join(f"{sample} {digest}\n" for sample, digest in sorted(digests.items()))
    return hashlib.sha256(text.encode()).hexdigest()
