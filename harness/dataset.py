"""Datasets in the official release layout.

    <root>/<model_dir>/<task>/source/<sample list>      (which samples count)
    <root>/<model_dir>/<task>/feature_test/<id>.npy      (one feature per sample)

The sample list decides what is evaluated, never a directory listing. Lists are
read as the authors released them (CRLF or LF, with or without a final newline).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path

import numpy as np

from harness.ctc import CTC, TaskSpec
from harness.errors import DatasetError, FeatureError
from harness.npyio import check_finite, load_npy, read_npy_header
from harness.safe_io import name_problem


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip():
            yield number, line.strip()


def parse_sample_list(path: Path, fmt: str) -> list[str]:
    """Feature ids (file stems in feature_test/) from a sample list of format `fmt`."""
    ids: list[str] = []
    try:
        for number, line in _lines(path):
            ids.append(_parse_line(line, fmt, f"{path}:{number}"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"{path}: sample ids listed twice: {', '.join(duplicates[:5])}")
    if not ids:
        raise DatasetError(f"{path}: the sample list is empty")
    return ids


def _parse_line(line: str, fmt: str, where: str) -> str:
    if fmt == "id":
        return line.split()[0]
    if fmt == "name_label":  # "<image name> <class index>"
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetError(f"{where}: expected '<image name> <label>', got {line!r}")
        return Path(parts[0]).stem if parts[0].upper().endswith(".JPEG") else parts[0]
    if fmt == "nyu_pairs":  # "<scene>/rgb_<n>.jpg <scene>/sync_depth_<n>.png <focal>"
        parts = line.split()
        if len(parts) < 2 or "/" not in parts[0]:
            raise DatasetError(f"{where}: expected '<scene>/rgb_<n>.jpg <scene>/sync_depth_<n>.png <focal>', got {line!r}")
        scene, image = parts[0].rsplit("/", 1)
        return f"{scene.replace('/', '_')}_{Path(image).stem}"
    if fmt == "name_caption":  # "<image>.jpg <caption>"
        name = line.split(maxsplit=1)[0]
        return name[:-4] if name.lower().endswith(".jpg") else name
    if fmt == "arc_jsonl":
        try:
            item = json.loads(line)
            return str(item["id"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{where}: not an ARC item with an 'id' ({exc})") from None
    raise DatasetError(f"{where}: unknown sample list format '{fmt}'")


def read_id_file(path: str | Path) -> list[str]:
    """A user's --samples file: one id per line (blank lines and # comments skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the samples file ({exc.strerror or exc})") from None
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise DatasetError(f"{path}: no sample ids in the samples file")
    return ids


@dataclass(frozen=True)
class Sample:
    task: str
    id: str
    path: Path


@dataclass
class Dataset:
    """A dataset in the official layout, read through a CTC."""

    root: Path
    ctc: CTC
    name: str = "custom"
    is_demo: bool = False
    sample_list_override: dict[str, Path] = field(default_factory=dict)

    def task_dir(self, task: str) -> Path:
        spec = self.ctc.task(task)
        return self.root / spec.model_dir / task

    def training_dir(self, task: str) -> Path:
        """Where the official layout keeps a task's training features for learned codecs."""
        return self.task_dir(task) / "feature_train" / "train"

    def has_task(self, task: str) -> bool:
        return self.task_dir(task).is_dir()

    def available_tasks(self) -> list[str]:
        return [t for t in self.ctc.tasks if self.has_task(t)]

    def sample_list_path(self, task: str) -> Path:
        if task in self.sample_list_override:
            return self.sample_list_override[task]
        spec = self.ctc.task(task)
        base = self.task_dir(task)
        if not base.is_dir():
            raise DatasetError(f"{base}: no such directory; the dataset at {self.root} has no '{task}' task "
                               f"(expected <root>/{spec.model_dir}/{task}/)")
        found = sorted({p for pattern in spec.sample_lists for p in base.glob(pattern)})
        if not found:
            raise DatasetError(f"{base}/source: no sample list for '{task}' "
                               f"(looked for {', '.join(spec.sample_lists)})")
        if len(found) > 1:
            lists = [parse_sample_list(p, spec.sample_list_format) for p in found]
            if any(ids != lists[0] for ids in lists[1:]):
                raise DatasetError(f"{base}/source: several different sample lists for '{task}': "
                                   f"{', '.join(str(p) for p in found)}; keep one")
        return found[0]

    def sample_ids(self, task: str) -> list[str]:
        spec = self.ctc.task(task)
        return parse_sample_list(self.sample_list_path(task), spec.sample_list_format)

    def feature_path(self, task: str, sample_id: str) -> Path:
        check_sample_id(sample_id, f"dataset '{self.name}', task '{task}'")  # every feature path is made here
        return self.task_dir(task) / "feature_test" / f"{sample_id}.npy"

    def samples(self, task: str, only: Iterable[str] | None = None, limit: int | None = None) -> list[Sample]:
        """Samples of a task in list order; `only` restricts to ids (unknown ids are an error)."""
        ids = self.sample_ids(task)
        if only is not None:  # a --samples file may list ids of several tasks
            wanted = set(only)
            ids = [i for i in ids if i in wanted]
        if limit is not None:
            ids = ids[:limit]
        return [Sample(task, i, self.feature_path(task, i)) for i in ids]

    def load(self, sample: Sample) -> np.ndarray:
        return load_feature(sample.path, self.ctc.task(sample.task))

    def fingerprint(self, tasks: Iterable[str]) -> str:
        """sha256 over each task's sample list bytes: which samples a run codes. The features' content
        is checked per job (each record carries its feature's sha256), so a changed feature redoes
        exactly its own jobs instead of refusing the run."""
        digest = hashlib.sha256()
        for task in sorted(tasks):
            digest.update(task.encode() + b"\0" + self.sample_list_path(task).read_bytes())
        return digest.hexdigest()


def check_header(path: Path, spec: TaskSpec) -> tuple[int, ...]:
    """Check a feature's .npy header against the task's CTC shape and dtype (no data read)."""
    header = read_npy_header(path)
    problem = spec.check_shape(header.shape)
    if problem:
        raise FeatureError(f"{path}: wrong shape for task '{spec.name}': {problem}")
    if header.dtype != np.dtype(spec.dtype):
        raise FeatureError(f"{path}: wrong dtype for task '{spec.name}': expected {spec.dtype}, got {header.dtype}")
    return header.shape


def load_feature(path: Path, spec: TaskSpec) -> np.ndarray:
    """Load one feature and check it against the task's CTC shape, dtype and finiteness."""
    check_header(path, spec)
    array = load_npy(path)
    check_finite(array, path)
    return array


def check_sample_id(sample_id: str, where: str) -> None:
    """Ids become file names: one plain path component, no control characters, bounded length."""
    problem = name_problem(sample_id)
    if problem:
        raise DatasetError(f"{where}: sample id {problem}")
