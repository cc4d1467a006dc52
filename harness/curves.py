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

import pandas as pd

from harness.bdrate import BDResult, bd_metric, bd_rate
from harness.ctc import CTC
from harness.errors import HarnessError, unknown_name
from harness.npyio import atomic_write_text, read_csv_checked
from harness.results import METRICS_COLUMNS, METRICS_NUMBERS, primary_metrics, read_table, secondary_columns, summary

ANCHOR_COLUMNS = ["anchor", "task", "rate_index", "bpfp", "metric", "metric_name", "higher_is_better", "mse", "source"]
ANCHORS_ENV = "FCM_HARNESS_ANCHORS"


@dataclass
class Curve:
    """One codec's points: a tidy frame with task, rate_index, bpfp, metric, mse (+ times when known)."""

    name: str
    points: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)

    def task(self, task: str) -> pd.DataFrame:
        return self.points[self.points.task == task].sort_values("bpfp", ascending=False)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.points.task.unique())


def anchor_dirs() -> list[Path]:
    """Where anchor sheets are looked up: the shipped ones, ./anchors, then $FCM_HARNESS_ANCHORS."""
    dirs = [Path(str(resources.files("harness_anchors")))]
    local = Path("anchors")
    if local.is_dir() and local.resolve() != dirs[0].resolve():
        dirs.append(local)
    dirs += [Path(p) for p in os.environ.get(ANCHORS_ENV, "").split(os.pathsep) if p]
    return dirs


def available_anchors() -> dict[str, tuple[Path, str]]:
    """Anchor name -> (sheet, value of its `anchor` column). Paper sheets give paper-<anchor>."""
    found: dict[str, tuple[Path, str]] = {}
    for directory in anchor_dirs():
        for sheet in sorted(directory.glob("*.csv")):
            try:
                head = pd.read_csv(sheet, usecols=["anchor"])
            except (ValueError, OSError):
                continue  # not an anchor sheet (e.g. the complexity table)
            prefix = "paper-" if sheet.name.startswith("paper-") else ""
            for anchor in head.anchor.unique():
                found[f"{prefix}{anchor}"] = (sheet, anchor)
    return found


def load_anchor(name: str) -> Curve:
    anchors = available_anchors()
    if name not in anchors:
        raise HarnessError(unknown_name("anchor", name, anchors))
    sheet, anchor = anchors[name]
    frame = read_csv_checked(sheet, "anchor sheet", ANCHOR_COLUMNS, ("rate_index", "bpfp", "metric", "mse"))
    frame = frame[frame.anchor == anchor].copy()
    frame["higher_is_better"] = frame.higher_is_better.astype(str).str.lower() == "true"
    sources = "; ".join(sorted(frame.source.astype(str).unique()))
    return Curve(name, frame, f"{sheet.name}: {sources}")


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
    return Curve(name, table, str(run_dir))


def resolve_curve(spec: str, ctc: CTC, on: str = "metric") -> Curve:
    """An anchor name or a run directory."""
    if spec in available_anchors():
        return load_anchor(spec)
    if Path(spec).is_dir():
        return load_run_curve(Path(spec), ctc, on)
    raise HarnessError(unknown_name("anchor or run directory", spec, available_anchors()))


@dataclass(frozen=True)
class TaskComparison:
    task: str
    rate: BDResult
    metric: BDResult


def compare(anchor: Curve, test: Curve, on: str = "metric", method: str = "pchip",
            policy: str = "nan") -> list[TaskComparison]:
    """BD-rate and BD-metric of `test` against `anchor` for every task both have."""
    if on not in ("metric", "mse"):
        raise HarnessError(f"--on must be 'metric' or 'mse', got {on!r}")
    out = []
    for task in sorted(set(anchor.tasks) & set(test.tasks)):
        a, t = anchor.task(task), test.task(task)
        if on == "mse":
            a, t = a[a.mse > 0], t[t.mse > 0]
            ya, yt, higher = a.mse, t.mse, False
        else:
            ya, yt, higher = a.metric, t.metric, bool(a.higher_is_better.iloc[0])
        kwargs = {"higher_is_better": higher, "method": method, "policy": policy}
        out.append(TaskComparison(task, bd_rate(a.bpfp, ya, t.bpfp, yt, **kwargs),
                                  bd_metric(a.bpfp, ya, t.bpfp, yt, **kwargs)))
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


def run_description(meta: dict) -> str:
    """Where a run's numbers come from, in words that stay true on another machine (no local paths)."""
    codec, dataset, ctc = meta["codec"], meta["dataset"], meta["ctc"]
    tools = ", ".join(f"{k} {v.split(' Copyright')[0].rstrip(':')}"  # version banners: the first words
                      for k, v in sorted(codec.get("tools", {}).items()) if isinstance(v, str))
    options = ", ".join(f"{k}={v}" for k, v in sorted(codec.get("options", {}).items()))
    return (f"harness run --codec {codec['name']} (version {codec['version']}"
            + (f"; {tools}" if tools else "") + (f"; options {options}" if options else "")
            + f") on dataset {dataset['name']} under CTC {ctc['name']} {ctc['version']} "
            f"(sha256 {ctc['sha256'][:12]}), started {meta.get('created', '?')}")


def promote_run(run_dir: Path, name: str, ctc: CTC, out_dir: Path, source: str | None = None) -> Path:
    """Save a run's per-rate-point curve as an anchor sheet `<out_dir>/<name>.csv`."""
    from harness.provenance import load_run_meta

    curve = load_run_curve(run_dir, ctc, on="mse")
    frame = curve.points.copy()
    frame["anchor"] = name
    frame["source"] = source or run_description(load_run_meta(run_dir))
    for column in ("metric", "metric_name"):
        if column not in frame:
            frame[column] = float("nan") if column == "metric" else ""
    columns = ANCHOR_COLUMNS + [c for c in ("rate_parameter", "rate_point", "samples", "enc_s", "dec_s")
                                if c in frame]
    path = out_dir / f"{name}.csv"
    atomic_write_text(path, frame[columns].to_csv(index=False))
    return path
