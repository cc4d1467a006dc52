"""`harness report RUN_DIR`: HTML, workbook, CSV and pictures of a run against anchors.

The page opens with the mean BD-rates against each anchor, on the task metric and on PSNR in dB
(-10*log10 feature MSE; the peak cancels in BD-rate, so none is needed), each with its bootstrap
interval or the reason it is withheld; every BD number comes from harness.comparison.
Per task: rate-accuracy (R-A) and rate-distortion curves (distortion in dB) against every anchor,
the rate-accuracy-drop curve (R-AD: % drop of the metric from the original
features; 1/RMSE for dpt, as the paper does), the distortion-accuracy fit (R²
of the metric on feature MSE, paper Table 5), BD-rate/BD-metric tables, and
coding times with their ratio to the anchor's. The report states on its face
the CTC, dataset (and whether it is synthetic), sample counts, anchor
sources, BD method and monotonicity policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
import os
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from harness import comparison
from harness.ctc import CTC
from harness.curves import Curve, load_anchor, load_run_curve, psnr_db, resolve_curve
from harness.figures import PSNR_LABEL, curve_plot, scatter_fit
from harness.npyio import atomic_write_bytes, atomic_write_text, read_csv_checked
from harness.run_meta import read_run_meta
from harness.results import METRICS_COLUMNS, METRICS_NUMBERS, SECONDARY_PREFIX, primary_metrics


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    workbook: Path
    bd_csv: Path
    points_csv: Path
    figures: list[Path]
    anchors: list[str]  # "name: file (folder)" of every anchor, for the user to see where numbers came from


def accuracy_drop(values: pd.Series, original: float, task: str) -> pd.Series:
    """% drop of the metric from the original features (dpt: of 1/RMSE; FID has no drop).

    Undefined (NaN) when the original value is 0 (dpt in fidelity mode: RMSE 0 on the originals).
    """
    if not original or not np.isfinite(original):
        return pd.Series(np.nan, index=values.index)
    if task == "dpt":
        return 100 * (1 / original - 1 / values) / (1 / original)
    return 100 * (original - values) / original


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")


def _originals(run_dir: Path) -> dict[str, float]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    metrics = primary_metrics(read_csv_checked(path, "metrics table", METRICS_COLUMNS, METRICS_NUMBERS))
    orig = metrics[metrics.rate_point.astype(str) == "orig"]
    return dict(zip(orig.task, orig.value))


def _complexity(anchor: str) -> pd.DataFrame:
    sheet = Path(str(resources.files("harness_anchors"))) / "paper-complexity.csv"
    codec = anchor.removeprefix("paper-")
    frame = pd.read_csv(sheet)
    return frame[(frame.codec == codec) & (frame.phase == "encode")]


def build_report(run_dir: Path, ctc: CTC, anchors: tuple[str, ...] | None = None, out: Path | None = None,
                 method: str = "pchip", policy: str = "nan", ons: tuple[str, ...] | None = None) -> ReportFiles:
    """Report a run against anchors: names of anchor sheets or run directories (default: the CTC's);
    BD-rates on `ons` (default: the task metric when evaluated, and PSNR)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report"
    described = read_run_meta(run_dir)
    meta = described.raw
    run = load_run_curve(run_dir, ctc, on="mse")
    run.name = described.codec
    anchors = ctc.anchors if anchors is None else anchors
    anchor_curves = [_named(resolve_curve(a, ctc, on="mse")) for a in anchors]
    has_metric = comparison.has_metric(run)
    ons = ons or (("metric",) if has_metric else ()) + ("psnr",)
    result = comparison.build(run, anchor_curves, ctc, ons=ons, method=method, policy=policy)
    originals = _originals(run_dir)
    paper_original = load_anchor("paper-original").points.set_index("task").metric.to_dict()
    figures: list[Path] = []
    sections, bd_rows = [], []
    for task in run.tasks:
        spec = ctc.task(task)
        secondary = _secondary(run, task)
        curves = [run, *anchor_curves]
        section = {"task": task, "title": spec.title, "metric": spec.metric, "unit": spec.metric_unit,
                   "higher_is_better": spec.higher_is_better, "figures": [], "bd": [], "points": [], "r2": None}
        pictures = out / "figures"
        named = {a.name for a in anchor_curves}  # each anchor in its one style, as on every page
        section["figures"].append(curve_plot(task, curves, "mse", PSNR_LABEL, pictures / f"{task}-rd",
                                             transform=psnr_db, anchors=named)[0])
        if has_metric:
            section["figures"].append(curve_plot(task, curves, "metric", f"{spec.metric} {spec.metric_unit}",
                                                 pictures / f"{task}-ra", anchors=named)[0])
            if task != "tti" and task in originals:
                drop_curves = []
                for curve in curves:
                    base = originals[task] if curve is run else paper_original.get(task)
                    if not base:  # no original value, or 0 (dpt fidelity): no drop to show
                        continue
                    shown = curve.points.copy()
                    shown["drop"] = accuracy_drop(shown.metric, base, task)
                    drop_curves.append(replace(curve, points=shown))
                section["figures"].append(curve_plot(task, drop_curves, "drop", "accuracy drop %",
                                                     pictures / f"{task}-rad", anchors=named)[0])
            for column in secondary:  # e.g. KL beside CC: the run's own curve only
                section["figures"].append(curve_plot(task, [run], column, column.removeprefix(SECONDARY_PREFIX),
                                                     pictures / f"{task}-{column}")[0])
            points = run.task(task).dropna(subset=["metric"])
            section["r2"] = r_squared(points.mse.to_numpy(), points.metric.to_numpy())
            section["figures"].append(scatter_fit(task, points.mse, points.metric, section["r2"], "feature MSE",
                                                  spec.metric, pictures / f"{task}-da")[0])
        for against in result.anchors:
            for row in against.tasks:
                if row.task != task:
                    continue
                for bd in row.bd:
                    entry = _bd_row(task, against.anchor, bd)
                    section["bd"].append(entry)
                    bd_rows.append(entry)
        # published per-QP encode times (supplement Table 2) where the anchor has them
        reference = {}
        for name in anchors:
            table = _complexity(name)
            table = table[(table.task == task) & (table.kind == "exact") & (table.rate_param == "qp")]
            if len(table):
                reference[name] = dict(zip(table.rate_point.astype(float), table.seconds))
        for point in run.task(task).itertuples():
            row = {"rate_point": f"{point.rate_parameter}{point.rate_point:g}", "samples": point.samples,
                   "bpfp": point.bpfp, "mse": point.mse, "psnr_db": float(psnr_db(point.mse)),
                   "metric": getattr(point, "metric", float("nan")),
                   "enc_s": point.enc_s, "dec_s": point.dec_s, "constant": int(point.constant_recon)}
            row.update({column.removeprefix(SECONDARY_PREFIX): getattr(point, column) for column in secondary})
            for name, seconds in reference.items():  # published times are per QP: match by value
                published = seconds.get(float(point.rate_point)) if point.rate_parameter == "qp" else None
                row[f"enc_speedup_vs_{name}"] = (published / point.enc_s
                                                 if published and point.enc_s > 0 else float("nan"))
            section["points"].append(row)
        sections.append(section)

    out.mkdir(parents=True, exist_ok=True)
    bd = pd.DataFrame(bd_rows, columns=BD_COLUMNS)
    points = run.points
    bd_csv, points_csv = out / "bd.csv", out / "points.csv"
    atomic_write_text(bd_csv, bd.to_csv(index=False))
    atomic_write_text(points_csv, points.to_csv(index=False))
    workbook = write_workbook(out / "report.xlsx", sections, bd)
    summary, footnotes = _summary(result)
    context = {
        "codec": meta["codec"], "ctc": meta["ctc"], "dataset": meta["dataset"], "run_name": run_dir.name,
        "anchors": [{"name": a.name, "source": "" if a.file and a.file.is_dir() else a.source,  # a run's is its path
                     "where": _where(a)} for a in anchor_curves],
        "options": {k: "<path>" if os.path.isabs(str(v)) else v  # a path is this machine's
                    for k, v in sorted(described.options.items())},
        "method": method, "policy": policy, "sections": sections, "has_metric": has_metric,
        "summary": summary, "ons": result.ons, "notes": [*footnotes, *result.notes],
        "axis": {"metric": "task metric", "psnr": "PSNR (dB)", "mse": "feature MSE (linear)"},
        "fig": lambda p: Path(p).relative_to(out).as_posix(),
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("harness_reports"))),
                             undefined=jinja2.StrictUndefined, autoescape=True)
    html = out / "report.html"
    atomic_write_text(html, env.get_template("report.html.j2").render(**context))
    for section in sections:
        figures += [Path(f) for f in section["figures"]]
    return ReportFiles(html, workbook, bd_csv, points_csv, figures,
                       [f"{a.name}: {a.origin}" for a in anchor_curves])


BD_COLUMNS = ["task", "anchor", "on", "bd_rate_percent", "ci_low", "ci_high", "withheld", "bd_metric", "overlap",
              "reason", "interval_reason", "notes"]


def _bd_row(task: str, anchor: str, bd: comparison.BD) -> dict:
    return {"task": task, "anchor": anchor, "on": bd.on, "bd_rate_percent": bd.value, "ci_low": bd.interval.low,
            "ci_high": bd.interval.high, "withheld": bd.withheld, "bd_metric": bd.bd_metric, "overlap": bd.overlap,
            "reason": bd.reason, "interval_reason": bd.interval.reason if bd.ok else "", "notes": "; ".join(bd.notes),
            "rate_text": comparison.rate_text(bd), "interval_text": comparison.interval_text(bd)}


def _summary(result: comparison.ComparisonSet) -> tuple[list[dict], list[str]]:
    """The page's opening table: per anchor, the mean BD-rate on each axis with its interval; and the
    reasons a missing interval has, once each under the table (they repeat on every row)."""
    rows, footnotes = [], []
    for against in result.anchors:
        cells = []
        for on in result.ons:
            mean = against.mean(on)
            if mean.ok and not mean.interval.ok:
                footnotes.append(f"no interval on the {on} axis: {mean.interval.reason}")
            cells.append({"rate": comparison.rate_text(mean), "interval": comparison.interval_text(mean),
                          "note": "; ".join(dict.fromkeys(x for x in (against.mean_note(on), mean.reason) if x))})
        rows.append({"anchor": against.anchor, "cells": cells})
    return rows, list(dict.fromkeys(footnotes))


def _named(curve: Curve) -> Curve:
    """A run directory used as an anchor is named by its folder's name, not its path on this machine."""
    if curve.file is not None and curve.file.is_dir() and "@" in curve.name:
        curve.name = f"{curve.name.split('@', 1)[0]}@{curve.file.name}"
    return curve


def _where(curve: Curve) -> str:
    """Where an anchor's points come from, without this machine's paths: the sheet's file name and the
    kind of folder (shipped, ./anchors, $FCM_HARNESS_ANCHORS), or 'run directory <name>'."""
    if curve.file is None:
        return ""
    if curve.file.is_dir():
        return f"run directory {curve.file.name}"
    folder = curve.origin.rsplit("(", 1)[-1].rstrip(")") if curve.origin.endswith(")") else ""
    return f"{curve.file.name} ({folder})" if folder else curve.file.name


def _secondary(run: Curve, task: str) -> list[str]:
    """The run's secondary-metric columns that have values for `task`."""
    points = run.task(task)
    return [c for c in points.columns if c.startswith(SECONDARY_PREFIX) and not points[c].isna().all()]


def _only(curve: Curve, task: str) -> Curve:
    return replace(curve, points=curve.points[curve.points.task == task])


def write_workbook(path: Path, sections: list[dict], bd: pd.DataFrame) -> Path:
    """One sheet per task in the CTC layout, and a summary sheet of BD-rates (harness.sheet's writer)."""
    from harness.sheet import workbook_bytes

    headers = [h for h in BD_COLUMNS if h in bd.columns]
    summary = [[row[h] for h in headers] for row in (bd.to_dict("records") if not bd.empty else [])]
    sheets = [("summary", [([headers], summary)])]
    for section in sections:
        columns = list(section["points"][0].keys()) if section["points"] else []
        sheets.append((section["task"], [([columns], [[row[c] for c in columns] for row in section["points"]])]))
    atomic_write_bytes(path, workbook_bytes(sheets, "feature coding report"))
    return path
