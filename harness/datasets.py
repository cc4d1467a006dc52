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
    """

    name: str
    description: str
    prepare: Callable[[CTC, Path, Callable[[int, int], None] | None], Path]
    version: str = "1"
    is_synthetic: bool = True
    ctc: str = "paper"
