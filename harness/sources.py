"""Resolve --dataset NAME / --data-root DIR to a `Dataset`.

Built-in datasets (demo, ...) are made on first use into the cache
(`$FCM_HARNESS_CACHE`, else `~/.cache/fcm-harness`) and then read through the
same official-layout reader as real data.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import sys

from tqdm import tqdm

from harness.ctc import CTC
from harness.dataset import Dataset
from harness.datasets import DatasetSpec
from harness.errors import DatasetError, HarnessError
from harness.registry import Registry

DEFAULT_DATASET = "demo"


@dataclass(frozen=True)
class DatasetSource:
    label: str
    dataset: Dataset
    synthetic: bool


def cache_dir() -> Path:
    env = os.environ.get("FCM_HARNESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fcm-harness"


def resolve_dataset(name: str | None, root: Path | None, ctc: CTC, registry: Registry,
                    progress: bool = True) -> DatasetSource:
    if name and root:
        raise HarnessError("give either --dataset or --data-root, not both")
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: data root is not a directory")
        return DatasetSource(f"data-{root.resolve().name}", Dataset(root, ctc, name=str(root)), False)
    spec: DatasetSpec = registry.dataset(name or DEFAULT_DATASET).spec
    # the version is part of the label: runs on another version of a built-in dataset never mix
    return DatasetSource(f"{spec.name}-v{spec.version}", Dataset(prepare_builtin(spec, ctc, progress), ctc, name=spec.name,
                                            is_demo=spec.is_synthetic), spec.is_synthetic)


def prepare_builtin(spec: DatasetSpec, ctc: CTC, progress: bool = True) -> Path:
    """Make a built-in dataset once (into a temporary directory, then renamed) and return its root."""
    target = cache_dir() / "datasets" / f"{spec.name}-v{spec.version}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise HarnessError(f"{staging}: cannot create the dataset cache ({exc.strerror}); "
                           "set FCM_HARNESS_CACHE to a writable directory") from None
    bar = tqdm(desc=f"making dataset '{spec.name}'", unit="file", disable=not progress, file=sys.stderr)

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        spec.prepare(ctc, staging, report)
        (staging / ".complete").write_text(spec.version + "\n")
        if target.exists():  # another process finished first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()
    return target
