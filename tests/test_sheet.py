"""The standardized result sheet: sheet.csv and sheet.xlsx hold the same numbers; time ratios are
JVET's geometric means."""

from __future__ import annotations

from collections import Counter
import math
from pathlib import Path
import re
import zipfile

import pandas as pd
import pytest

from harness.cli import main
from harness.runner import RunRequest, execute
from harness.sheet import time_ratio
from harness.sheet_layout import COLUMNS, POINT_BLOCK, SUMMARY_BLOCK


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("sheet")
    execute(RunRequest(codec="zlib", tasks=["cls", "csr"], limit=1, rate_points=[0, 2, 4], out=base / "run", jobs=1,
                       progress=False))
    assert main(["pack", str(base / "run"), "--out", str(base / "bundle")]) == 0
    return base / "bundle"


def workbook_numbers(path: Path) -> dict[str, Counter]:
    """Numbers of each worksheet, read from the xlsx XML (no openpyxl needed)."""
    with zipfile.ZipFile(path) as book:
        names = re.findall(r'<sheet name="([^"]+)" sheetId="(\d+)"', book.read("xl/workbook.xml").decode())
        out = {}
        for name, number in names:
            xml = book.read(f"xl/worksheets/sheet{number}.xml").decode()
            cells = re.findall(r"<c r=\"[A-Z]+\d+\"(?: s=\"\d+\")?><v>([^<]+)</v></c>", xml)
            out[name] = Counter(float(v) for v in cells)
    return out


def test_csv_and_workbook_hold_identical_numbers(bundle):
    frame = pd.read_csv(bundle / "sheet.csv", float_precision="round_trip")
    assert list(frame.columns) == list(COLUMNS)
    points = frame[frame.section == "point"]
    assert set(points[points.role == "test"].task) == {"cls", "csr"}
    assert set(points[points.role == "anchor"].curve) == {"paper-vtm", "paper-hyperprior"}
    numbers = workbook_numbers(bundle / "sheet.xlsx")
    for task in ("cls", "csr"):
        rows = points[points.task == task]
        want = Counter(float(v) for key, _ in POINT_BLOCK if key != "rate_point" for v in rows[key] if pd.notna(v))
        assert numbers[task] == want
    summary = frame[frame.section == "summary"]
    assert set(summary.task) == {"cls", "csr", "mean"}
    want = Counter(float(v) for key, _ in SUMMARY_BLOCK for v in summary[key]
                   if key not in ("task", "anchor", "note") and pd.notna(v))
    assert numbers["summary"] == want


def test_time_ratios_are_geometric_means_over_matched_rate_points():
    anchor = pd.DataFrame({"rate_index": [0, 1, 2], "enc_s": [10.0, 20.0, 5.0]})
    test = pd.DataFrame({"rate_index": [0, 1], "enc_s": [5.0, 40.0]})
    ratio, count = time_ratio(anchor, test, "enc_s")
    assert count == 2 and math.isclose(ratio, 1.0)  # sqrt(0.5 * 2)
    assert time_ratio(anchor.drop(columns="enc_s"), test, "enc_s") == (None, 0)


def test_text_a_spreadsheet_would_run_is_quoted_and_floats_are_one_number_in_both_files():
    from harness.sheet import _sheet_value

    assert _sheet_value("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _sheet_value("+1") == "'+1" and _sheet_value("@cmd") == "'@cmd" and _sheet_value("top1") == "top1"
    assert _sheet_value(0.0033160129999032506) == 0.00331601299990325
    assert _sheet_value(float("nan")) != _sheet_value(float("nan")) and _sheet_value(None) is None
