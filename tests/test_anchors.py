"""Anchors are named, not shadowed: a name found in two sheets is an error naming both files,
and `compare`/`report` say which file each anchor came from."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.curves import ANCHORS_ENV, available_anchors, load_anchor

SHIPPED_TABLE = Path(str(resources.files("harness_anchors"))) / "paper-table3.csv"


def _stray_paper_vtm(folder: Path) -> Path:
    """A sheet that also defines the paper's 'vtm' (as `paper-vtm`), with other numbers."""
    table = pd.read_csv(SHIPPED_TABLE)
    table = table[table.anchor == "vtm"].copy()
    table["bpfp"] = table.bpfp / 10
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "paper-stray.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a folder that is not the source tree, without $FCM_HARNESS_ANCHORS."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ANCHORS_ENV, raising=False)
    return tmp_path


def test_a_stray_local_sheet_cannot_shadow_a_shipped_anchor(elsewhere, capsys):
    stray = _stray_paper_vtm(elsewhere / "anchors")
    assert main(["compare", "paper-vtm", "paper-hyperprior"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: anchor 'paper-vtm'" in err
    assert str(SHIPPED_TABLE) in err and "paper-stray.csv" in err  # both files named
    with pytest.raises(Exception, match="paper-stray.csv"):
        load_anchor("paper-vtm")
    # names defined once still work
    assert main(["compare", "paper-hyperprior", "paper-original", "--format", "json"]) == 0
    assert stray.exists()


def test_a_name_in_two_env_sheets_is_an_error(elsewhere, monkeypatch):
    first, second = elsewhere / "one", elsewhere / "two"
    for folder in (first, second):
        folder.mkdir()
        pd.DataFrame({"anchor": ["mine"] * 4, "task": ["cls"] * 4, "rate_index": range(4),
                      "bpfp": [4.0, 2.0, 1.0, 0.5], "metric": [90.0, 80.0, 70.0, 60.0],
                      "metric_name": ["top1_accuracy"] * 4, "higher_is_better": [True] * 4,
                      "mse": [0.1, 0.2, 0.3, 0.4], "source": [f"{folder.name}"] * 4}).to_csv(
            folder / "mine.csv", index=False)
    monkeypatch.setenv(ANCHORS_ENV, f"{first}:{second}")
    with pytest.raises(Exception) as caught:
        load_anchor("mine")
    assert str(first / "mine.csv") in str(caught.value) and str(second / "mine.csv") in str(caught.value)
    monkeypatch.setenv(ANCHORS_ENV, str(first))
    assert load_anchor("mine").file == first / "mine.csv"


def test_compare_says_which_file_each_anchor_came_from(elsewhere, capsys):
    assert main(["compare", "paper-vtm", "paper-hyperprior", "--format", "json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["anchor_file"] == str(SHIPPED_TABLE) and data["test_file"] == str(SHIPPED_TABLE)
    assert f"anchor 'paper-vtm': {SHIPPED_TABLE} (shipped)" in captured.err
    assert "paper-vtm" in available_anchors()


def test_promote_refuses_a_shipped_name(tmp_path, data_root, elsewhere):
    from harness.ctc import load_ctc
    from harness.curves import promote_run
    from harness.runner import RunRequest, execute

    run = execute(RunRequest(codec="zlib", tasks=["cls"], rate_points=[0, 2], limit=1, data_root=data_root,
                             out=tmp_path / "run", jobs=1, progress=False)).run_dir
    with pytest.raises(Exception, match="already defined by .*mini-vvc.csv"):
        promote_run(run, "mini-vvc", load_ctc(), elsewhere / "anchors")
    assert not (elsewhere / "anchors" / "mini-vvc.csv").exists()


def test_report_says_which_file_each_anchor_came_from(tmp_path, data_root, elsewhere, capsys):
    from harness.runner import RunRequest, execute

    run = execute(RunRequest(codec="zlib", tasks=["cls"], limit=1, data_root=data_root, out=tmp_path / "run",
                             jobs=1, progress=False)).run_dir
    assert main(["report", str(run), "--anchor", "paper-vtm"]) == 0
    assert f"anchor paper-vtm: {SHIPPED_TABLE} (shipped)" in capsys.readouterr().err
    html = (run / "report" / "report.html").read_text()  # the page names the sheet, not this machine's path
    assert f"from {SHIPPED_TABLE.name} (shipped)" in html and str(SHIPPED_TABLE) not in html
    _stray_paper_vtm(elsewhere / "anchors")
    assert main(["report", str(run), "--anchor", "paper-vtm"]) == 1
    assert "paper-stray.csv" in capsys.readouterr().err


def test_a_malformed_anchor_sheet_is_one_line_naming_the_file(elsewhere):
    (elsewhere / "anchors").mkdir()
    pd.DataFrame({"anchor": ["bad"], "task": ["cls"], "bpfp": ["lots"]}).to_csv(elsewhere / "anchors" / "bad.csv",
                                                                                index=False)
    with pytest.raises(Exception, match=r"anchors/bad.csv: anchor sheet lacks column\(s\) rate_index"):
        load_anchor("bad")
