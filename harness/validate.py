"""`harness validate`: check a dataset against the CTC before spending hours on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
import hashlib
from pathlib import Path

from harness.dataset import Dataset, check_sample_id
from harness.errors import HarnessError
from harness.npyio import atomic_write_text


@dataclass
class TaskReport:
    task: str
    sample_list: str = ""
    listed: int = 0
    ok: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    dataset: str
    tasks: list[TaskReport]

    @property
    def ok(self) -> bool:
        return all(not t.problems for t in self.tasks)

    def lines(self) -> list[str]:
        out = [f"dataset {self.dataset}"]
        for t in self.tasks:
            state = "ok" if not t.problems else f"{len(t.problems)} problem(s)"
            out.append(f"  {t.task}: {t.ok}/{t.listed} samples valid ({state}); list {t.sample_list}")
            out.extend(f"    - {p}" for p in t.problems[:20])
            if len(t.problems) > 20:
                out.append(f"    ... and {len(t.problems) - 20} more")
        out.append("valid" if self.ok else "INVALID")
        return out


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """'<sha256>  <relative path>' lines (sha256sum format) -> {path: digest}."""
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise HarnessError(f"{path}:{number}: expected '<sha256>  <path>', got {line!r}")
        entries[parts[1].lstrip("*").strip()] = parts[0]
    return entries


def validate_dataset(dataset: Dataset, tasks: Iterable[str], manifest: Path | None = None,
                     on_file: Callable[[], None] | None = None) -> ValidationReport:
    """Check every listed sample: present, readable without pickle, CTC shape/dtype, finite."""
    digests = read_manifest(manifest) if manifest else None
    reports = []
    for task in tasks:
        report = TaskReport(task)
        reports.append(report)
        try:
            report.sample_list = str(dataset.sample_list_path(task))
            samples = dataset.samples(task)
        except HarnessError as exc:
            report.problems.append(str(exc))
            continue
        report.listed = len(samples)
        for sample in samples:
            try:
                check_sample_id(sample.id, report.sample_list)
                dataset.load(sample)
                if digests is not None:
                    _check_digest(dataset.root, sample.path, digests)
                report.ok += 1
            except HarnessError as exc:
                report.problems.append(str(exc))
            if on_file:
                on_file()
    return ValidationReport(str(dataset.root), reports)


def _check_digest(root: Path, path: Path, digests: dict[str, str]) -> None:
    rel = path.relative_to(root).as_posix()
    if rel not in digests:
        raise HarnessError(f"{path}: not in the manifest")
    if sha256_file(path) != digests[rel]:
        raise HarnessError(f"{path}: sha256 differs from the manifest")


def write_manifest(dataset: Dataset, tasks: Iterable[str], out: Path) -> int:
    """Write a sha256sum-style manifest of every listed feature; returns the count."""
    lines = []
    for task in tasks:
        for sample in dataset.samples(task):
            lines.append(f"{sha256_file(sample.path)}  {sample.path.relative_to(dataset.root).as_posix()}")
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines)
