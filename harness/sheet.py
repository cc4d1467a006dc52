"""The standardized result sheet of a run (or bundle) against its CTC's anchors: sheet.csv and
sheet.xlsx with identical numbers (layout in harness.sheet_layout).

Per task: an anchor block per anchor and a test block (rate point, BPFP, task metric, feature
MSE, encode and decode seconds); a summary of BD-rate per task and their mean against each
anchor, on the task metric and on PSNR in dB (-10*log10 feature MSE; linear MSE only when asked
for), each with its bootstrap interval or the reason it is withheld, and encode/decode time
ratios as JVET reports them: the geometric mean over rate points of test time / anchor time,
rate points matched by their order from the highest rate (rate_index), only where both curves
have times. Every BD number comes from harness.comparison, as on the other pages.

The one workbook writer of the harness (`workbook_bytes`) is here; `harness report` uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
import datetime as dt
import io
import math
from pathlib import Path

import pandas as pd

from harness.comparison import BD, ComparisonSet, compare_run, finite, time_ratio
from harness.ctc import CTC
from harness.npyio import atomic_write_bytes, atomic_write_text
from harness.sheet_layout import COLUMNS, POINT_BLOCK, SUMMARY_BLOCK

__all__ = ["sheet_csv", "sheet_rows", "sheet_workbook", "time_ratio", "workbook_bytes", "write_sheet"]

FIXED_TIME = dt.datetime(2000, 1, 1)  # the workbook's creation date: identical bytes for identical numbers


_number = finite  # a sheet cell's number, or None for text, NaN and infinities


def _count(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def sheet_rows(result: ComparisonSet) -> list[dict]:
    """The sheet's rows: every rate point of every curve, then the summary, of one comparison."""
    test = result.test_curve
    rows: list[dict] = []
    for task in test.tasks:
        curves = [(a.curve, "anchor") for a in result.anchors if task in a.curve.tasks] + [(test, "test")]
        for curve, role in curves:
            for point in curve.task(task).sort_values("rate_index").to_dict("records"):
                label = (f"{point['rate_parameter']}{point['rate_point']:g}"
                         if _number(point.get("rate_point")) is not None and point.get("rate_parameter") else "")
                rows.append({"section": "point", "task": task, "curve": curve.name, "role": role,
                             "rate_index": int(point["rate_index"]), "rate_point": label,
                             "samples": _count(point.get("samples")), "bpfp": _number(point.get("bpfp")),
                             "metric": _number(point.get("metric")), "metric_name": point.get("metric_name") or "",
                             "mse": _number(point.get("mse")), "enc_s": _number(point.get("enc_s")),
                             "dec_s": _number(point.get("dec_s"))})
    rows += summary_rows(result)
    return [{c: _sheet_value(row.get(c)) for c in COLUMNS} for row in rows]


# A spreadsheet runs a cell that starts with one of these as a formula; names in a sheet can come
# from someone else's files (a metric's name in metrics.csv), so such text is quoted.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _sheet_value(value: object) -> object:
    """Floats to 15 significant digits (the CSV's repr and the workbook's doubles are then the same
    numbers, whatever precision the inputs had); text that a spreadsheet would run, quoted."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.15g}")
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def summary_rows(result: ComparisonSet) -> list[dict]:
    """Per anchor: a row per task and the mean, BD-rates with their intervals and time ratios."""
    rows = []
    for against in result.anchors:
        for task in against.tasks:
            row = {"section": "summary", "task": task.task, "anchor": against.anchor,
                   "enc_time_ratio": task.enc_time_ratio, "dec_time_ratio": task.dec_time_ratio,
                   "time_points": task.time_points or None}
            notes = [f"{bd.on}: {bd.reason}" for bd in task.bd if not bd.ok]
            if not task.time_points:
                notes.append("no times to compare")
            rows.append(_bd_columns(row, task.bd, notes))
        mean = {"section": "summary", "task": "mean", "anchor": against.anchor,
                "enc_time_ratio": against.enc_time_ratio, "dec_time_ratio": against.dec_time_ratio}
        notes = [f"{on}: {note}" for on, note in zip(result.ons, against.mean_notes)]
        reasons = [(bd.on, bd.interval.reason) for t in against.tasks for bd in t.bd if bd.ok and not bd.interval.ok]
        reasons += [(bd.on, bd.interval.reason) for bd in against.means if bd.ok and not bd.interval.ok]
        notes += [f"{on} interval withheld: {reason}" for on, reason in dict.fromkeys(reasons)]
        if any(bd.interval.ok for bd in against.means):
            notes.append(f"intervals: {result.level:.0%} bootstrap, {result.bootstrap} resamples (seed {result.seed}) "
                         "of the test's samples; anchors fixed")
        rows.append(_bd_columns(mean, against.means, notes))
    return rows


def _bd_columns(row: dict, bds: tuple[BD, ...], notes: list[str]) -> dict:
    for bd in bds:
        row[f"bd_rate_{bd.on}_percent"] = bd.value
        row[f"bd_rate_{bd.on}_low"], row[f"bd_rate_{bd.on}_high"] = bd.interval.low, bd.interval.high
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


#: a block of a worksheet: its bold heading rows, then its rows
Block = tuple[Sequence[Sequence[object]], Sequence[Sequence[object]]]


def workbook_bytes(sheets: Sequence[tuple[str, Sequence[Block]]], title: str) -> bytes:
    """An xlsx workbook: per worksheet its blocks one under the other, a blank row between them.

    Labels come from run directories and anchor sheets others made: every string is written as a
    string, never as a formula ("=...", "{=...}"), a number or a hyperlink; NaN is an empty cell and
    an infinity text (no #NUM! cells). Fixed properties: identical bytes for identical numbers.
    """
    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    book.set_properties({"created": FIXED_TIME, "title": title})
    bold = book.add_format({"bold": True})
    for name, blocks in sheets:
        sheet = book.add_worksheet(name[:31])
        line = 0
        for heads, body in blocks:
            for row in heads:
                sheet.write_row(line, 0, [_cell(v) for v in row], bold)
                line += 1
            for row in body:
                sheet.write_row(line, 0, [_cell(v) for v in row])
                line += 1
            line += 1
    book.close()
    return buffer.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def sheet_workbook(rows: list[dict]) -> bytes:
    """The same rows as a workbook: a summary sheet, then per task one block per curve."""
    summary = [r for r in rows if r["section"] == "summary"]
    keep = [(key, label) for key, label in SUMMARY_BLOCK  # an axis no row has (e.g. MSE not asked for) is left out
            if key in ("task", "anchor", "note") or any(r[key] is not None for r in summary)]
    sheets: list[tuple[str, list[Block]]] = [
        ("summary", [([[label for _, label in keep]], [[r[key] for key, _ in keep] for r in summary])])]
    for task in sorted({row["task"] for row in rows if row["section"] == "point"}):
        points = [r for r in rows if r["section"] == "point" and r["task"] == task]
        blocks: list[Block] = []
        for curve in dict.fromkeys(r["curve"] for r in points):
            block = [r for r in points if r["curve"] == curve]
            heads = [[f"{block[0]['role']}: {curve}", block[0]["metric_name"]], [label for _, label in POINT_BLOCK]]
            blocks.append((heads, [[r[key] for key, _ in POINT_BLOCK] for r in block]))
        sheets.append((task, blocks))
    return workbook_bytes(sheets, "feature coding result sheet")


def write_sheet(run_dir: Path, ctc: CTC, codec: str, out: Path | None = None, ons: Sequence[str] | None = None,
                result: ComparisonSet | None = None) -> tuple[Path, Path]:
    """sheet.csv and sheet.xlsx of a run into `out` (default: the run directory); `ons` as for
    harness.comparison.compare_run (default: the task metric when evaluated, and PSNR); `result`: that
    comparison when the caller has made it already (pack writes bd-rates.json from the same one)."""
    out = Path(out) if out else Path(run_dir)
    rows = sheet_rows(result or compare_run(Path(run_dir), ctc, codec, ons=ons))
    atomic_write_text(out / "sheet.csv", sheet_csv(rows))
    atomic_write_bytes(out / "sheet.xlsx", sheet_workbook(rows))
    return out / "sheet.csv", out / "sheet.xlsx"
