"""`harness report RUN_DIR`: HTML, workbook, CSV and pictures of a run against anchors.

Per task: rate-accuracy (R-A) and rate-distortion curves against every anchor,
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
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from harness.ctc import CTC
from harness.curves import Curve, compare, load_anchor, load_run_curve, resolve_curve
from harness.figures import curve_plot, scatter_fit
from harness.npyio import atomic_write_text, read_csv_checked
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
                 method: str = "pchip", policy: str = "nan") -> ReportFiles:
    """Report a run against anchors: names of anchor sheets or run directories (default: the CTC's)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report"
    described = read_run_meta(run_dir)
    meta = described.raw
    run = load_run_curve(run_dir, ctc, on="mse")
    run.name = described.codec
    anchors = ctc.anchors if anchors is None else anchors
    anchor_curves = [resolve_curve(a, ctc, on="mse") for a in anchors]
    has_metric = "metric" in run.points and not run.points.metric.isna().all()
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
        section["figures"].append(curve_plot(task, curves, "mse", "feature MSE", pictures / f"{task}-rd")[0])
        if has_metric:
            section["figures"].append(curve_plot(task, curves, "metric", f"{spec.metric} {spec.metric_unit}",
                                                 pictures / f"{task}-ra")[0])
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
                                                     pictures / f"{task}-rad")[0])
            for column in secondary:  # e.g. KL beside CC: the run's own curve only
                section["figures"].append(curve_plot(task, [run], column, column.removeprefix(SECONDARY_PREFIX),
                                                     pictures / f"{task}-{column}")[0])
            points = run.task(task).dropna(subset=["metric"])
            section["r2"] = r_squared(points.mse.to_numpy(), points.metric.to_numpy())
            section["figures"].append(scatter_fit(task, points.mse, points.metric, section["r2"], "feature MSE",
                                                  spec.metric, pictures / f"{task}-da")[0])
        for anchor in anchor_curves:
            if task not in anchor.tasks:
                continue
            ons = ["metric", "mse"] if has_metric else ["mse"]
            for on in ons:
                result = compare(anchor, _only(run, task), on=on, method=method, policy=policy)[0]
                row = {"task": task, "anchor": anchor.name, "on": on,
                       "bd_rate_percent": result.rate.value, "bd_metric": result.metric.value,
                       "overlap": result.rate.overlap, "reason": result.rate.reason,
                       "notes": "; ".join(result.rate.notes)}
                section["bd"].append(row)
                bd_rows.append(row)
        # published per-QP encode times (supplement Table 2) where the anchor has them
        reference = {}
        for name in anchors:
            table = _complexity(name)
            table = table[(table.task == task) & (table.kind == "exact") & (table.rate_param == "qp")]
            if len(table):
                reference[name] = dict(zip(table.rate_point.astype(float), table.seconds))
        for point in run.task(task).itertuples():
            row = {"rate_point": f"{point.rate_parameter}{point.rate_point:g}", "samples": point.samples,
                   "bpfp": point.bpfp, "mse": point.mse, "metric": getattr(point, "metric", float("nan")),
                   "enc_s": point.enc_s, "dec_s": point.dec_s, "constant": int(point.constant_recon)}
            row.update({column.removeprefix(SECONDARY_PREFIX): getattr(point, column) for column in secondary})
            for name, seconds in reference.items():  # published times are per QP: match by value
                published = seconds.get(float(point.rate_point)) if point.rate_parameter == "qp" else None
                row[f"enc_speedup_vs_{name}"] = (published / point.enc_s
                                                 if published and point.enc_s > 0 else float("nan"))
            section["points"].append(row)
        sections.append(section)

    out.mkdir(parents=True, exist_ok=True)
    bd = pd.DataFrame(bd_rows)
    points = run.points
    bd_csv, points_csv = out / "bd.csv", out / "points.csv"
    atomic_write_text(bd_csv, bd.to_csv(index=False))
    atomic_write_text(points_csv, points.to_csv(index=False))
    workbook = write_workbook(out / "report.xlsx", sections, bd)
    context = {
        "codec": {**meta["codec"], "options": described.options}, "ctc": meta["ctc"], "dataset": meta["dataset"], "run_dir": str(run_dir),
        "anchors": [{"name": a.name, "source": a.source, "origin": a.origin} for a in anchor_curves],
        "method": method,
        "policy": policy, "sections": sections, "has_metric": has_metric,
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


def _secondary(run: Curve, task: str) -> list[str]:
    """The run's secondary-metric columns that have values for `task`."""
    points = run.task(task)
    return [c for c in points.columns if c.startswith(SECONDARY_PREFIX) and not points[c].isna().all()]


def _only(curve: Curve, task: str) -> Curve:
    return replace(curve, points=curve.points[curve.points.task == task])


def write_workbook(path: Path, sections: list[dict], bd: pd.DataFrame) -> Path:
    """One sheet per task in the CTC layout, and a summary sheet of BD-rates (xlsxwriter)."""
    import xlsxwriter

    tmp = path.with_suffix(".xlsx.tmp")
    # Labels come from run directories and anchor sheets others made: every string is written as a
    # string, never as a formula ("=...", "{=...}"), a number or a hyperlink (numbers stay numbers).
    book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_numbers": False,
                                          "strings_to_urls": False})
    bold = book.add_format({"bold": True})
    summary = book.add_worksheet("summary")
    headers = ["task", "anchor", "on", "bd_rate_percent", "bd_metric", "overlap", "reason"]
    summary.write_row(0, 0, headers, bold)
    for r, row in enumerate(bd.to_dict("records") if not bd.empty else [], 1):
        summary.write_row(r, 0, [_cell(row[h]) for h in headers])
    for section in sections:
        sheet = book.add_worksheet(section["task"])
        columns = list(section["points"][0].keys()) if section["points"] else []
        sheet.write_row(0, 0, columns, bold)
        for r, row in enumerate(section["points"], 1):
            sheet.write_row(r, 0, [_cell(row[c]) for c in columns])
    book.close()
    tmp.replace(path)
    return path


def _cell(value):
    """NaN as an empty cell and infinities as text: no error formulas (#NUM!) in the workbook."""
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    return value
