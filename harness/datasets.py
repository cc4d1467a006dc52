"""Built-in datasets by name (--dataset NAME), registered by plugins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.ctc import CTC


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset a plugin can make on this machine.

    `prepare(ctc, cache_dir, progress)` builds the dataset in the official
    layout under `cache_dir` if it is not there yet (deterministically) and
    returns its root. `progress(done, total)` may be called to show progress.

    - ctc: the shipped CTC (a folder of ctc/) the dataset is coded under.
    - content_key(source) -> short text naming the inputs the dataset is made
      from (hash of texts, of a source list); it goes into the cache folder and
      the run label so datasets made from other inputs never mix. `source` is
      the folder given with --data-root, or None.
    - takes_source: --dataset NAME --data-root DIR makes the dataset from DIR
      (prepare then gets `source=DIR`).
    """

    name: str
    description: str
    prepare: Callable[[CTC, Path, Callable[[int, int], None] | None], Path]
    version: str = "1"
    is_synthetic: bool = True
    ctc: str = "paper"
    content_key: Callable[[Path | None], str] | None = None
    takes_source: bool = False
