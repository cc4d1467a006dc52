"""The standardized result sheet of a run (or bundle) against its CTC's anchors: sheet.csv and
sheet.xlsx with identical numbers (layout in harness.sheet_layout).

Per task: an anchor block per anchor and a test block (rate point, BPFP, task metric, feature
MSE, encode and decode seconds); a summary of BD-rate per task and their mean against each
anchor, on the task metric and on feature MSE, and encode/decode time ratios as JVET reports
them: the geometric mean over rate points of test time / anchor time, rate points matched by
their order from the highest rate (rate_index), only where both curves have times.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path

import pandas as pd

from harness.ctc import CTC
from harness.curves import compare, load_run_curve, mean_bd_rate, resolve_curve
from harness.npyio import atomic_write_bytes, atomic_write_text
from harness.sheet_layout import COLUMNS, POINT_BLOCK, SUMMARY_BLOCK

FIXED_TIME = dt.datetime(2000, 1, 1)  # the workbook's creation date: identical bytes for identical numbers


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def time_ratio(anchor: pd.DataFrame, test: pd.DataFrame, column: str) -> tuple[float | None, int]:
    """Geometric mean over matched rate points of test/anchor time, and how many points were matched."""
    if column not in anchor or column not in test:
        return None, 0
    a = anchor.set_index("rate_index")[column]
    t = test.set_index("rate_index")[column]
    logs = [math.log(t[i] / a[i]) for i in sorted(set(a.index) & set(t.index))
            if _number(a[i]) and _number(t[i]) and a[i] > 0 and t[i] > 0]
    return (math.exp(sum(logs) / len(logs)), len(logs)) if logs else (None, 0)


def sheet_rows(run_dir: Path, ctc: CTC, codec: str, method: str = "pchip", policy: str = "nan") -> list[dict]:
    test = load_run_curve(Path(run_dir), ctc, on="mse")
    test.name = codec
    anchors = [resolve_curve(name, ctc, on="mse") for name in ctc.anchors]
    has_metric = "metric" in test.points and not test.points.metric.isna().all()
    rows: list[dict] = []
    for task in test.tasks:
        for curve, role in [(a, "anchor") for a in anchors if task in a.tasks] + [(test, "test")]:
            for point in curve.task(task).sort_values("rate_index").to_dict("records"):
                label = (f"{point['rate_parameter']}{point['rate_point']:g}"
                         if _number(point.get("rate_point")) is not None and point.get("rate_parameter") else "")
                rows.append({"section": "point", "task": task, "curve": curve.name, "role": role,
                             "rate_index": int(point["rate_index"]), "rate_point": label,
                             "samples": _count(point.get("samples")), "bpfp": _number(point.get("bpfp")),
                             "metric": _number(point.get("metric")), "metric_name": point.get("metric_name") or "",
                             "mse": _number(point.get("mse")), "enc_s": _number(point.get("enc_s")),
                             "dec_s": _number(point.get("dec_s"))})
    for anchor in anchors:
        per_on = {on: compare(anchor, test, on=on, method=method, policy=policy)
                  for on in (["metric"] if has_metric else []) + ["mse"] if set(anchor.tasks) & set(test.tasks)}
        if not per_on:
            continue
        logs: dict[str, list[tuple[float, int]]] = {"enc_s": [], "dec_s": []}
        for task in sorted(set(anchor.tasks) & set(test.tasks)):
            row = _summary(task, anchor.name, per_on, task)
            for column, key in (("enc_s", "enc_time_ratio"), ("dec_s", "dec_time_ratio")):
                ratio, count = time_ratio(anchor.task(task), test.task(task), column)
                row[key] = ratio
                if ratio is not None:
                    logs[column].append((ratio, count))
                row["time_points"] = max(row.get("time_points") or 0, count) or None
            if row.get("time_points") is None:
                row["note"] = (row["note"] + "; " if row["note"] else "") + "no times to compare"
            rows.append(row)
        mean = _summary("mean", anchor.name, per_on, None)
        for column, key in (("enc_s", "enc_time_ratio"), ("dec_s", "dec_time_ratio")):
            ratios = [r for r, _ in logs[column]]
            mean[key] = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None
        rows.append(mean)
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


def _summary(label: str, anchor: str, per_on: dict, task: str | None) -> dict:
    row: dict = {"section": "summary", "task": label, "anchor": anchor, "note": ""}
    notes = []
    for on, comparisons in per_on.items():
        key = f"bd_rate_{on}_percent"
        if task is None:
            value, note = mean_bd_rate(comparisons)
            row[key] = value
            notes.append(f"{on}: {note}")
        else:
            result = next(c for c in comparisons if c.task == task).rate
            row[key] = _number(result.value) if result.ok else None
            if not result.ok:
                notes.append(f"{on}: {result.reason}")
    row["note"] = "; ".join(notes)
    return row


def sheet_csv(rows: list[dict]) -> str:
    """The tidy table; floats in full precision (repr), so the workbook's doubles are the same numbers."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("rate_index", "samples", "time_points"):  # counts stay integers beside empty cells
        frame[column] = frame[column].astype("Int64")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def sheet_workbook(rows: list[dict]) -> bytes:
    """The same rows as a workbook: a summary sheet, then per task one block per curve."""
    import xlsxwriter

    buffer = io.BytesIO()
    # untrusted labels are written as text, never as formulas, numbers or links
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    book.set_properties({"created": FIXED_TIME, "title": "feature coding result sheet"})
    bold = book.add_format({"bold": True})
    summary = book.add_worksheet("summary")
    summary.write_row(0, 0, [label for _, label in SUMMARY_BLOCK], bold)
    line = 1
    for row in rows:
        if row["section"] == "summary":
            summary.write_row(line, 0, [row[key] for key, _ in SUMMARY_BLOCK])
            line += 1
    tasks = sorted({row["task"] for row in rows if row["section"] == "point"})
    for task in tasks:
        sheet = book.add_worksheet(task[:31])
        line = 0
        points = [r for r in rows if r["section"] == "point" and r["task"] == task]
        for curve in dict.fromkeys(r["curve"] for r in points):
            block = [r for r in points if r["curve"] == curve]
            sheet.write_row(line, 0, [f"{block[0]['role']}: {curve}", block[0]["metric_name"]], bold)
            sheet.write_row(line + 1, 0, [label for _, label in POINT_BLOCK], bold)
            for offset, row in enumerate(block, 2):
                sheet.write_row(line + offset, 0, [row[key] for key, _ in POINT_BLOCK])
            line += len(block) + 3
    book.close()
    return buffer.getvalue()


def write_sheet(run_dir: Path, ctc: CTC, codec: str, out: Path | None = None) -> tuple[Path, Path]:
    """sheet.csv and sheet.xlsx of a run into `out` (default: the run directory)."""
    out = Path(out) if out else Path(run_dir)
    rows = sheet_rows(run_dir, ctc, codec)
    atomic_write_text(out / "sheet.csv", sheet_csv(rows))
    atomic_write_bytes(out / "sheet.xlsx", sheet_workbook(rows))
    return out / "sheet.csv", out / "sheet.xlsx"
