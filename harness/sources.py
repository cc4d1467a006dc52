"""Resolve --dataset NAME / --data-root DIR to a `Dataset`.

Built-in datasets (demo, ...) are made on first use into the cache
(`$FCM_HARNESS_CACHE`, else `~/.cache/fcm-harness`) and then read through the
same official-layout reader as real data.
"""

from __future__ import annotations

from dataclasses import dataclass
import glob
import os
from pathlib import Path
import shutil
import sys

from tqdm import tqdm

from harness.ctc import CTC, builtin_ctc_dir, load_ctc
from harness.dataset import Dataset
from harness.datasets import DatasetSpec
from harness.errors import DatasetError, HarnessError
from harness.locks import Locked, exclusive
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


def resolve_ctc(ctc_dir: str | Path | None, dataset: str | None, registry: Registry) -> CTC:
    """The CTC in force: --ctc when given, else the one the built-in dataset names, else the paper's."""
    if ctc_dir is not None:
        return load_ctc(ctc_dir)
    if dataset:
        return load_ctc(builtin_ctc_dir(registry.dataset(dataset).spec.ctc))
    return load_ctc()


def resolve_dataset(name: str | None, root: Path | None, ctc: CTC, registry: Registry,
                    progress: bool = True) -> DatasetSource:
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: data root is not a directory")
    if root is not None and not name:
        return DatasetSource(f"data-{root.resolve().name}", Dataset(root, ctc, name=str(root)), False)
    spec: DatasetSpec = registry.dataset(name or DEFAULT_DATASET).spec
    if root is not None and not spec.takes_source:
        raise HarnessError(f"dataset '{spec.name}' is made without source data: give either --dataset or "
                           "--data-root, not both")
    # the version and the inputs' key are part of the label: runs on other data never mix
    label = f"{spec.name}-v{spec.version}"
    if spec.content_key:
        label += f"-{spec.content_key(root)}"
    made = prepare_builtin(spec, ctc, progress, label, root)
    return DatasetSource(label, Dataset(made, ctc, name=spec.name, is_demo=spec.is_synthetic), spec.is_synthetic)


def prepare_builtin(spec: DatasetSpec, ctc: CTC, progress: bool = True, label: str | None = None,
                    source: Path | None = None) -> Path:
    """Make a built-in dataset once (into a temporary directory, then renamed) and return its root."""
    target = cache_dir() / "datasets" / (label or f"{spec.name}-v{spec.version}")
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_builds(target)
        with exclusive(_build_lock(staging)):  # held while building: tells live builds from killed ones
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            _build(spec, ctc, staging, target, progress, source)
        _build_lock(staging).unlink(missing_ok=True)
    except OSError as exc:
        if exc.filename is not None and not Path(exc.filename).is_relative_to(target.parent):
            raise  # not the cache's fault (e.g. a source file): the CLI names that file
        raise HarnessError(f"{exc.filename or staging}: cannot make the dataset cache ({exc.strerror or exc}); "
                           "set FCM_HARNESS_CACHE to a writable directory with room") from None
    return target


def _build_lock(staging: Path) -> Path:
    return staging.with_name(staging.name + ".lock")


def remove_dead_builds(target: Path) -> None:
    """Remove the staging folders of builds of `target` whose process died (killed, crashed):
    a builder locks its folder's lock file before making the folder, so a folder whose lock is
    free belongs to nobody. Folders of builds still running are left alone."""
    found = target.parent.glob(f"{glob.escape(target.name)}.tmp-*")
    for folder in {p.with_name(p.name.removesuffix(".lock")) for p in found}:  # a lock without a folder too
        lock = _build_lock(folder)
        try:
            with exclusive(lock):
                shutil.rmtree(folder, ignore_errors=True)
                lock.unlink(missing_ok=True)
        except (Locked, OSError):
            continue


def _build(spec: DatasetSpec, ctc: CTC, staging: Path, target: Path, progress: bool, source: Path | None) -> None:
    bar = tqdm(desc=f"making dataset '{spec.name}'", unit="file", disable=not progress, file=sys.stderr)

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if source is not None:
            spec.prepare(ctc, staging, report, source=source)
        else:
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
