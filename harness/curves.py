"""Rate-accuracy curves from anchors and runs, and BD comparisons between them.

A curve holds, per task, one point per rate point: BPFP (dataset mean of
per-sample BPFP), the task metric, the feature MSE and coding times. Curves
come from anchor sheets (anchors/*.csv: the paper's Table 3, promoted runs) or
from run directories (results.csv, plus metrics.csv once tasks are evaluated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.bdrate import BDResult, bd_metric, bd_rate
from harness.ctc import CTC
from harness.errors import HarnessError, unknown_name
from harness.npyio import atomic_write_text, read_csv_checked
from harness.run_meta import RunMeta
from harness import schemas
from harness.results import METRICS_COLUMNS, METRICS_NUMBERS, primary_metrics, read_table, secondary_columns, summary

ANCHOR_COLUMNS = ["anchor", "task", "rate_index", "bpfp", "metric", "metric_name", "higher_is_better", "mse", "source"]
ANCHORS_ENV = "FCM_HARNESS_ANCHORS"


@dataclass
class Curve:
    """One codec's points: a tidy frame with task, rate_index, bpfp, metric, mse (+ times when known).

    `origin` says where the points were read: an anchor sheet's path and the folder that
    provided it (shipped, ./anchors, $FCM_HARNESS_ANCHORS), or the run directory.
    """

    name: str
    points: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)
    file: Path | None = None
    origin: str = ""

    def task(self, task: str) -> pd.DataFrame:
        return self.points[self.points.task == task].sort_values("bpfp", ascending=False)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.points.task.unique())


@dataclass(frozen=True)
class AnchorSheet:
    """Where an anchor name is defined: the sheet, its `anchor` column value, the folder kind."""

    path: Path
    anchor: str
    folder: str  # "shipped", "./anchors" or "$FCM_HARNESS_ANCHORS"

    def describe(self) -> str:
        return f"{self.path} ({self.folder})"


@dataclass
class AnchorIndex:
    """Every anchor name found, the names defined by more than one sheet, and unreadable sheets."""

    found: dict[str, AnchorSheet] = field(default_factory=dict)
    conflicts: dict[str, list[AnchorSheet]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def add(self, name: str, sheet: AnchorSheet) -> None:
        if name in self.conflicts:
            self.conflicts[name].append(sheet)
        elif name in self.found:
            self.conflicts[name] = [self.found.pop(name), sheet]
        else:
            self.found[name] = sheet

    def __contains__(self, name: str) -> bool:
        return name in self.found or name in self.conflicts

    def lookup(self, name: str) -> AnchorSheet:
        """The one sheet defining `name`; a name defined twice is an error naming both files."""
        if name in self.conflicts:
            where = " and by ".join(s.describe() for s in self.conflicts[name])
            raise HarnessError(f"anchor '{name}' is defined by {where}; an anchor name must be defined once "
                               "(rename or remove one of them; shipped anchors cannot be replaced)")
        if name not in self.found:
            hint = f" (unreadable sheets: {'; '.join(self.unreadable)})" if self.unreadable else ""
            raise HarnessError(unknown_name("anchor", name, self.names()) + hint)
        return self.found[name]

    def names(self) -> list[str]:
        return sorted([*self.found, *self.conflicts])


def anchor_dirs() -> list[tuple[Path, str]]:
    """Where anchor sheets are looked up (each folder once): shipped, ./anchors, $FCM_HARNESS_ANCHORS."""
    candidates = [(Path(str(resources.files("harness_anchors"))), "shipped"), (Path("anchors"), "./anchors")]
    candidates += [(Path(p), f"${ANCHORS_ENV}") for p in os.environ.get(ANCHORS_ENV, "").split(os.pathsep) if p]
    dirs, seen = [], set()
    for directory, folder in candidates:
        if directory.is_dir() and directory.resolve() not in seen:  # the source tree's ./anchors is the shipped one
            seen.add(directory.resolve())
            dirs.append((directory.absolute(), folder))
    return dirs


def anchor_index() -> AnchorIndex:
    """All anchor names with their sheets. Paper sheets (paper-*.csv) give paper-<anchor>."""
    index = AnchorIndex()
    for directory, folder in anchor_dirs():
        for sheet in sorted(directory.glob("*.csv")):
            try:
                if "anchor" not in pd.read_csv(sheet, nrows=0).columns:
                    continue  # not an anchor sheet (e.g. the complexity table)
                values = pd.read_csv(sheet, usecols=["anchor"], dtype=str).anchor.dropna().unique()
            except (ValueError, OSError) as exc:
                index.unreadable.append(f"{sheet}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
            prefix = "paper-" if sheet.name.startswith("paper-") else ""
            for anchor in values:
                index.add(f"{prefix}{anchor}", AnchorSheet(sheet, anchor, folder))
    return index


def available_anchors() -> dict[str, AnchorSheet]:
    """Anchor name -> the one sheet defining it (names defined twice are left out: see anchor_index)."""
    return anchor_index().found


def load_anchor(name: str, index: AnchorIndex | None = None) -> Curve:
    sheet = (index or anchor_index()).lookup(name)
    frame = _read_anchor_sheet(sheet.path)
    frame = frame[frame.anchor.astype(str) == sheet.anchor].copy()
    frame["higher_is_better"] = frame.higher_is_better.astype(str).str.lower() == "true"
    sources = "; ".join(sorted(frame.source.astype(str).unique()))
    return Curve(name, frame, f"{sheet.path.name}: {sources}", file=sheet.path, origin=sheet.describe())


def _read_anchor_sheet(path: Path) -> pd.DataFrame:
    """An anchor sheet with its columns checked; a bad sheet is one line naming the file."""
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise HarnessError(f"{path}: not a readable anchor sheet ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ANCHOR_COLUMNS if c not in frame.columns]
    if missing:
        raise HarnessError(f"{path}: anchor sheet lacks column(s) {', '.join(missing)}")
    for version in frame.get("schema", pd.Series(dtype=object)).unique():
        schemas.check_version(None if pd.isna(version) else version, schemas.ANCHOR_SHEET, str(path), "an anchor sheet")
    for column in ("bpfp", "metric", "mse"):
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            raise HarnessError(f"{path}: column '{column}' must hold numbers") from None
    return frame


def load_run_curve(run_dir: Path, ctc: CTC, on: str = "metric") -> Curve:
    """Per-rate-point curve of a run: BPFP mean, MSE mean, times, and metrics.csv when present."""
    if not (run_dir / "run.json").exists():
        raise HarnessError(f"{run_dir}: not a run directory (no run.json) and not a known anchor")
    table = summary(read_table(run_dir))
    if table.empty:
        raise HarnessError(f"{run_dir}: no finished jobs")
    metrics_path = run_dir / "metrics.csv"
    table = table.rename(columns={"enc_wall_s": "enc_s", "dec_wall_s": "dec_s"})
    if metrics_path.exists():
        every = read_csv_checked(metrics_path, "metrics table", METRICS_COLUMNS, METRICS_NUMBERS)
        metrics = primary_metrics(every)
        metrics = metrics[metrics.rate_point.astype(str) != "orig"].copy()
        metrics["rate_point"] = metrics.rate_point.astype(float)
        table = table.merge(metrics[["task", "rate_point", "metric", "value"]].rename(
            columns={"metric": "metric_name", "value": "metric"}), on=["task", "rate_point"], how="left")
        table = table.merge(secondary_columns(every), on=["task", "rate_point"], how="left")
    elif on == "metric":
        raise HarnessError(f"{run_dir}: no task metrics yet (metrics.csv); compare on feature MSE with --on mse")
    table["higher_is_better"] = [ctc.task(t).higher_is_better for t in table.task]
    table["rate_index"] = table.groupby("task").bpfp.rank(ascending=False, method="first").astype(int) - 1
    name = f"{table.codec.iloc[0]}@{run_dir}"
    return Curve(name, table, str(run_dir), file=run_dir, origin=f"{run_dir} (run directory)")


def resolve_curve(spec: str, ctc: CTC, on: str = "metric") -> Curve:
    """An anchor name or a run directory."""
    index = anchor_index()
    if spec in index:
        return load_anchor(spec, index)
    if Path(spec).is_dir():
        return load_run_curve(Path(spec), ctc, on)
    raise HarnessError(unknown_name("anchor or run directory", spec, index.names()))


@dataclass(frozen=True)
class TaskComparison:
    task: str
    rate: BDResult
    metric: BDResult


#: what a BD number can be computed on: the task metric, PSNR of the features in dB
#: (-10*log10 MSE; the JVET/MPEG convention for distortion) or linear feature MSE (asked for by name)
ONS = ("metric", "psnr", "mse")


def psnr_db(mse: Any) -> np.ndarray:
    """-10*log10(MSE) in dB; NaN where MSE is not positive. A PSNR's peak term 10*log10(peak^2) shifts
    every point of every curve alike, and a BD-rate at equal quality does not change under such a shift
    (nor does BD-PSNR, a difference), so no peak is needed."""
    values = np.asarray(mse, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, -10 * np.log10(np.where(values > 0, values, 1.0)), np.nan)


def axis_values(points: pd.DataFrame, on: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(rate, quality, higher_is_better) of one task's points on `on`; distortion points need MSE > 0."""
    if on == "metric":
        return (points.bpfp.to_numpy(float), points.metric.to_numpy(float),
                bool(points.higher_is_better.iloc[0]) if len(points) else True)
    usable = points[points.mse > 0]
    if on == "mse":
        return usable.bpfp.to_numpy(float), usable.mse.to_numpy(float), False
    return usable.bpfp.to_numpy(float), psnr_db(usable.mse), True


def check_on(on: str) -> None:
    if on not in ONS:
        raise HarnessError(f"--on must be 'metric', 'psnr' or 'mse', got {on!r}")


def compare(anchor: Curve, test: Curve, on: str = "metric", method: str = "pchip",
            policy: str = "nan") -> list[TaskComparison]:
    """BD-rate and BD-metric of `test` against `anchor` for every task both have."""
    check_on(on)
    out = []
    for task in sorted(set(anchor.tasks) & set(test.tasks)):
        ra, ya, higher = axis_values(anchor.task(task), on)
        rt, yt, _ = axis_values(test.task(task), on)
        kwargs = {"higher_is_better": higher, "method": method, "policy": policy}
        out.append(TaskComparison(task, bd_rate(ra, ya, rt, yt, **kwargs), bd_metric(ra, ya, rt, yt, **kwargs)))
    if not out:
        raise HarnessError(f"'{anchor.name}' and '{test.name}' have no task in common")
    return out


def mean_bd_rate(rows: list[TaskComparison]) -> tuple[float | None, str]:
    finite = [r.rate.value for r in rows if r.rate.ok]
    if not finite:
        return None, "no task has a BD-rate"
    missing = [r.task for r in rows if not r.rate.ok]
    note = f"mean over {len(finite)} of {len(rows)} tasks" + (f" (without {', '.join(missing)})" if missing else "")
    return sum(finite) / len(finite), note


def model_hashes(fingerprints: dict) -> str:
    """'lm f32c1c1a32c8, sal 3392439f7ba6' (one model per task) or per 'task@rate point' when they differ."""
    by_task: dict[str, dict[str, str]] = {}
    for key, digest in sorted(fingerprints.items()):
        task, _, point = str(key).partition("@")
        by_task.setdefault(task, {})[point] = str(digest)[:12]
    parts = []
    for task, points in by_task.items():
        if len(set(points.values())) == 1:
            parts.append(f"{task} {next(iter(points.values()))}")
        else:
            parts += [f"{task}@{point} {digest}" for point, digest in points.items()]
    return ", ".join(parts)


def run_description(meta: dict, conditions: CTC | None = None) -> str:
    """Where a run's numbers come from, in words that stay true on another machine (no local paths);
    with the run's CTC, also the fingerprint of its codec family's conditions (CTC.family_fingerprint)."""
    codec, dataset, ctc = meta["codec"], meta["dataset"], meta["ctc"]
    family = codec.get("family")
    fingerprint = ""
    if conditions is not None and (family is None or family in conditions.families
                                   or family in conditions.family_aliases):  # a run of an earlier CTC version
        family = conditions.family(family) if family else None
        fingerprint = f"; {family or 'feature'} family conditions {conditions.family_fingerprint(family)}"
    tools = ", ".join(f"{k} {v.split(' Copyright')[0].rstrip(':')}"  # version banners: the first words
                      for k, v in sorted(codec.get("tools", {}).items())
                      if isinstance(v, str) and not os.path.isabs(v))  # a tool's path is this machine's
    options = ", ".join(f"{k}={'<path>' if os.path.isabs(str(v)) else v}"  # a path is this machine's
                        for k, v in sorted(RunMeta.from_dict(meta, Path("run.json")).options.items()))
    models = model_hashes(meta.get("run_key", {}).get("model_fingerprints", {}))
    return (f"harness run --codec {codec['name']} (version {codec['version']}"
            + (f"; {tools}" if tools else "") + (f"; options {options}" if options else "")
            + (f"; model files sha256 {models}" if models else "")
            + f") on dataset {dataset['name']} under CTC {ctc['name']} {ctc['version']} "
            f"(sha256 {ctc['sha256'][:12]}{fingerprint}), started {meta.get('created', '?')}")


def promote_run(run_dir: Path, name: str, ctc: CTC, out_dir: Path, source: str | None = None) -> Path:
    """Save a run's per-rate-point curve as an anchor sheet `<out_dir>/<name>.csv`.

    A name another sheet already defines is refused: anchors are never shadowed.
    """
    from harness.provenance import load_run_meta

    path = out_dir / f"{name}.csv"
    index = anchor_index()
    if name in index:
        defined = index.conflicts.get(name) or [index.found[name]]
        others = [s for s in defined if s.path.resolve() != path.resolve()]
        if others:
            raise HarnessError(f"anchor '{name}' is already defined by {others[0].describe()}; "
                               "promote the run under another name")

    curve = load_run_curve(run_dir, ctc, on="mse")
    frame = curve.points.copy()
    frame["anchor"] = name
    frame["source"] = source or run_description(load_run_meta(run_dir), ctc)
    for column in ("metric", "metric_name"):
        if column not in frame:
            frame[column] = float("nan") if column == "metric" else ""
    frame["schema"] = schemas.ANCHOR_SHEET
    columns = ANCHOR_COLUMNS + [c for c in ("rate_parameter", "rate_point", "samples", "enc_s", "dec_s", "schema")
                                if c in frame]
    atomic_write_text(path, frame[columns].to_csv(index=False))
    return path
