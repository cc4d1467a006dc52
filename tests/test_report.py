"""`harness report` writes the HTML, workbook, CSVs and every picture it references."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd
import pytest

from harness.cli import main
from harness.ctc import load_ctc
from harness.report import accuracy_drop, r_squared
from harness.runner import RunRequest, execute


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.refs.append(attrs["src"])
        if tag == "a" and "href" in attrs:
            self.refs.append(attrs["href"])


@pytest.mark.slow
def test_report_on_a_demo_run(tmp_path, capsys):
    run = execute(RunRequest(codec="zlib", tasks=["cls", "tti"], limit=2, out=tmp_path / "run", jobs=1,
                             progress=False)).run_dir
    assert main(["report", str(run)]) == 0
    report = run / "report"
    html = (report / "report.html").read_text()
    parser = _Refs()
    parser.feed(html)
    assert parser.refs and all((report / ref).exists() and (report / ref).stat().st_size > 0 for ref in parser.refs)
    assert "synthetic demo features" in html and "pchip" in html and "policy 'nan'" in html
    assert f"fcm-lm-paper {load_ctc().version}" in html and "paper Table 3" in html
    assert (report / "figures" / "cls-rd.svg").exists()
    assert "log10(MSE) [dB]" in (report / "figures" / "cls-rd.svg").read_text()  # R-D pictures in dB
    # the page opens with the mean BD-rates against each anchor, on the task metric and in dB
    assert html.index('class="bd-summary"') < html.index('class="facts"')
    summary = html[html.index('class="bd-summary"'):html.index("</table>", html.index('class="bd-summary"'))]
    assert "BD-rate, PSNR (dB)" in summary and "95 % interval" in summary  # not evaluated: no task metric
    assert summary.count("<tr>") == 3  # the header and one row per anchor
    assert "no peak is needed" in html
    assert str(tmp_path) not in html  # no paths of this machine on the page
    assert {"summary", "cls", "tti"} <= set(xlsx_sheet_names(report / "report.xlsx"))
    bd = pd.read_csv(report / "bd.csv")
    assert set(bd.anchor) == {"paper-vtm", "paper-hyperprior"} and set(bd.task) == {"cls", "tti"}


def xlsx_sheet_names(path) -> list[str]:
    """The workbook's sheet names, read with the standard library (openpyxl is not a dependency)."""
    import xml.etree.ElementTree as ET
    import zipfile
    with zipfile.ZipFile(path) as book:
        assert book.testzip() is None
        root = ET.fromstring(book.read("xl/workbook.xml"))
    return [sheet.get("name") for sheet in root.iter() if sheet.tag.endswith("}sheet")]


def test_accuracy_drop_and_r2_hand_worked():
    assert list(accuracy_drop(pd.Series([100.0, 90.0]), 100.0, "cls")) == [0.0, 10.0]
    # dpt: drop of 1/RMSE; RMSE 0.5 from 0.4 -> (2.5 - 2) / 2.5 = 20 %
    assert accuracy_drop(pd.Series([0.5]), 0.4, "dpt").iloc[0] == 20.0
    assert accuracy_drop(pd.Series([0.5]), 0.0, "dpt").isna().all()  # fidelity mode: RMSE 0 on originals
    import numpy as np
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert r_squared(x, 2 * x + 1) == 1.0
    assert abs(r_squared(x, np.array([1.0, 3.0, 2.0, 4.0])) - 0.64) < 1e-12


@pytest.mark.slow
def test_secondary_metrics_and_a_run_as_anchor(tmp_path):
    """Secondary metrics of metrics.csv (e.g. KL beside CC) get their own column and picture; a run
    directory serves as an anchor."""
    run = execute(RunRequest(codec="zlib", tasks=["cls"], limit=2, out=tmp_path / "run", jobs=1,
                             progress=False)).run_dir
    assert main(["evaluate", str(run)]) == 0
    metrics_path = run / "metrics.csv"
    metrics = pd.read_csv(metrics_path)
    extra = metrics.assign(metric="spread", value=metrics.bpfp / 10, primary=False)
    pd.concat([metrics, extra]).to_csv(metrics_path, index=False)
    assert main(["report", str(run), "--anchor", str(run), "--out", str(tmp_path / "rep")]) == 0
    points = pd.read_csv(tmp_path / "rep" / "points.csv")
    assert "secondary_spread" in points
    assert points.secondary_spread.to_numpy() == pytest.approx(points.bpfp.to_numpy() / 10)
    assert (tmp_path / "rep" / "figures" / "cls-secondary_spread.png").exists()
    bd = pd.read_csv(tmp_path / "rep" / "bd.csv")
    assert list(bd.anchor.unique()) == ["zlib@run"]  # a run as anchor: named by its folder, no path
    by_axis = bd.set_index("on")
    assert abs(by_axis.bd_rate_percent["psnr"]) < 1e-9  # a run against itself
    assert isinstance(by_axis.reason["metric"], str)  # 100 % at every rate: no BD on accuracy, and why
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<th>spread</th>" in html
    summary = html[html.index('class="bd-summary"'):html.index("</table>", html.index('class="bd-summary"'))]
    assert "BD-rate, task metric" in summary and "BD-rate, PSNR (dB)" in summary
    assert "zlib@run" in summary and "+0.00 %" in summary  # the mean in dB against itself
    assert str(tmp_path) not in html


def test_workbook_cells_are_inert(tmp_path):
    """Strings that look like formulas stay strings in report.xlsx; numbers (negative too) stay numbers."""
    import re
    import zipfile

    from harness.report import write_workbook

    hostile = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1:A2)", "=1+1", "http://example.com"]
    bd = pd.DataFrame({"task": ["cls"] * len(hostile), "anchor": hostile, "on": "mse",
                       "bd_rate_percent": -12.5, "bd_metric": float("nan"), "overlap": 1.0, "reason": hostile})
    sections = [{"task": "cls", "points": [{"rate_point": label, "bpfp": -0.25} for label in hostile]}]
    path = write_workbook(tmp_path / "report.xlsx", sections, bd)
    with zipfile.ZipFile(path) as book:
        sheets = {n: book.read(n).decode() for n in book.namelist() if n.startswith("xl/worksheets/sheet")}
        shared = book.read("xl/sharedStrings.xml").decode()
        names = book.namelist()
    assert sheets and not any("<f>" in xml or "<f " in xml for xml in sheets.values())
    assert not any(n.startswith("xl/worksheets/_rels") for n in names)  # no live hyperlinks either
    assert all(label.replace('"', "&quot;") in shared or label in shared for label in hostile)
    numbers = [v for xml in sheets.values() for v in re.findall(r'<c r="[A-Z]+\d+"(?: s="\d+")?><v>([^<]*)</v>', xml)]
    assert "-12.5" in numbers and "-0.25" in numbers  # untyped cells are numbers
