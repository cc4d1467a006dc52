"""`harness leaderboard`: one table per CTC, anchors as rows, crosscheck links, every file the page
references exists, tampered bundles are left out."""

from __future__ import annotations

from html.parser import HTMLParser
import json
from pathlib import Path
import shutil

import pytest

from harness.bundle import sums_text
from harness.cli import main
from harness.runner import RunRequest, execute


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.scripts = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.refs.append(attrs["src"])
        if tag == "a" and "href" in attrs:
            self.refs.append(attrs["href"])
        if tag in ("script", "link") and ("src" in attrs or "href" in attrs):
            self.scripts.append(attrs)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("board")
    execute(RunRequest(codec="zlib", tasks=["cls"], limit=2, rate_points=[0, 3], out=base / "run", jobs=1,
                       progress=False))
    assert main(["evaluate", str(base / "run")]) == 0
    folder = base / "bundles"
    meta = base / "meta.toml"
    meta.write_text('proponent = "Lab <b>A</b>"\nlicence = "MIT"\n')
    assert main(["pack", str(base / "run"), "--out", str(folder / "a"), "--meta", str(meta)]) == 0
    assert main(["pack", str(base / "run"), "--out", str(folder / "b")]) == 0
    assert main(["crosscheck", str(folder / "a"), "--jobs", "1", "--accept", "subset"]) == 0
    (folder / "b.tar").unlink()  # b is given as a directory, a as both (listed once)
    other = folder / "other-ctc"  # the same numbers claimed under other test conditions
    shutil.copytree(folder / "b", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["ctc"].update(name="other-ctc", sha256="0" * 64)
    (other / "manifest.json").write_text(json.dumps(manifest))
    (other / "SHA256SUMS").write_text(sums_text(other))
    broken = folder / "broken"
    shutil.copytree(folder / "b", broken)
    (broken / "sheet.csv").write_text("section\n")
    return folder


def test_the_site_groups_by_ctc_and_references_only_files_it_has(bundles, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["leaderboard", str(bundles), "--out", str(site)]) == 0
    assert "left out" in capsys.readouterr().err
    board = json.loads((site / "leaderboard.json").read_text())
    assert [g["ctc"]["name"] for g in board["groups"]] == ["fcm-lm-paper", "other-ctc"]
    paper = board["groups"][0]
    kinds = [(r["kind"], r["name"]) for r in paper["rows"]]
    assert kinds[:2] == [("anchor", "paper-vtm"), ("anchor", "paper-hyperprior")]
    entries = [r for r in paper["rows"] if r["kind"] == "entry"]
    assert sorted(r["bundle"] for r in entries) == ["a", "b"]
    a = next(r for r in entries if r["bundle"] == "a")
    assert a["crosscheck"]["verdict"] == "pass with notes" and a["crosscheck"]["report"].startswith("crosschecks/")
    assert next(r for r in entries if r["bundle"] == "b")["crosscheck"]["verdict"] == "not crosschecked"
    assert len(board["excluded"]) == 1 and "broken" in board["excluded"][0]
    html = (site / "index.html").read_text()
    parser = _Refs()
    parser.feed(html)
    assert parser.refs and not parser.scripts  # no external scripts or styles
    for ref in parser.refs:
        assert (site / ref).is_file() and (site / ref).stat().st_size > 0, ref
    assert any(ref.startswith("figures/") and ref.endswith("-cls-ra.png") for ref in parser.refs)
    assert "Lab &lt;b&gt;A&lt;/b&gt;" in html and "<script>" in html


def test_anchor_rows_compare_the_anchors_with_each_other(bundles, tmp_path):
    assert main(["leaderboard", str(bundles / "a"), "--out", str(tmp_path / "site")]) == 0
    board = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    vtm = board["groups"][0]["rows"][0]
    assert vtm["name"] == "paper-vtm" and vtm["bd"]["paper-vtm"]["cls"] == 0.0
    assert isinstance(vtm["bd"]["paper-hyperprior"]["cls"], float)  # the paper's VTM against its Hyperprior


class _Columns(HTMLParser):
    """Per table: the sortable headings' data-col values and the number of cells of each body row."""

    def __init__(self):
        super().__init__()
        self.tables, self.in_body = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"cols": [], "rows": []})
        elif tag == "th" and "data-col" in attrs:
            self.tables[-1]["cols"].append(int(attrs["data-col"]))
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.tables[-1]["rows"].append(0)
        elif tag == "td" and self.in_body:
            self.tables[-1]["rows"][-1] += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body = False


def test_every_body_column_has_exactly_one_sortable_heading(bundles, tmp_path):
    # the headings are grouped per anchor (two rows), so the script sorts by data-col, not by position
    site = tmp_path / "site"
    assert main(["leaderboard", str(bundles), "--out", str(site)]) == 0
    parser = _Columns()
    parser.feed((site / "index.html").read_text())
    assert len(parser.tables) == 2
    for table in parser.tables:
        width = set(table["rows"])
        assert len(width) == 1, width
        assert sorted(table["cols"]) == list(range(width.pop()))
