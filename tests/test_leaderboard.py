"""`harness leaderboard`: one table per CTC, anchors as rows, crosscheck links, every file the page
references exists, tampered bundles are left out; a stranger's bundle or report can neither write
outside --out, nor fool the board (hand-made reports, a fail hidden by a pass, forged anchors), nor
break it (unreadable bundles)."""

from __future__ import annotations

import hashlib
from html.parser import HTMLParser
import io
import json
import os
from pathlib import Path
import re
import shutil
import tarfile

import pytest

from harness.bundle import sums_text
from harness.cli import main
from harness.runner import RunRequest, execute

from conftest import resum


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
    assert [(c["verdict"], c["checker"]) for c in a["crosschecks"]] == [("pass with notes", "checker not named")]
    assert a["crosschecks"][0]["report"].startswith("crosschecks/") and a["verdict"] == "pass with notes"
    assert next(r for r in entries if r["bundle"] == "b")["verdict"] == "not crosschecked"
    assert len(board["excluded"]) == 1 and "broken" in board["excluded"][0]
    html = (site / "index.html").read_text()
    parser = _Refs()
    parser.feed(html)
    assert parser.refs and not parser.scripts  # no external scripts or styles
    for ref in parser.refs:
        if ref.startswith("#"):  # a link within the page: its target is there
            assert f'id="{ref[1:]}"' in html, ref
            continue
        assert (site / ref).is_file() and (site / ref).stat().st_size > 0, ref
    assert any(ref.startswith("figures/") and ref.endswith("-cls-ra.png") for ref in parser.refs)
    assert "Lab &lt;b&gt;A&lt;/b&gt;" in html and "<script>" in html


def test_anchor_rows_compare_the_anchors_with_each_other(bundles, tmp_path):
    assert main(["leaderboard", str(bundles / "a"), "--out", str(tmp_path / "site")]) == 0
    board = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    vtm = board["groups"][0]["rows"][0]
    assert vtm["name"] == "paper-vtm" and vtm["bd"]["paper-vtm"]["cls"] == 0.0
    assert isinstance(vtm["bd"]["paper-hyperprior"]["cls"], float)  # the paper's VTM against its Hyperprior
    assert vtm["bd"]["paper-hyperprior"]["mean"] == vtm["bd"]["paper-hyperprior"]["cls"]  # over this board's tasks
    assert isinstance(vtm["bd_psnr"]["paper-hyperprior"]["cls"], float)


def test_an_entrys_bd_rates_and_intervals_are_its_sheets(bundles, tmp_path):
    import pandas as pd

    stated = tmp_path / "in" / "stated"
    shutil.copytree(bundles / "b", stated)
    sheet = pd.read_csv(stated / "sheet.csv", dtype=str, keep_default_na=False)
    mean = (sheet.section == "summary") & (sheet.task == "mean") & (sheet.anchor == "paper-vtm")
    assert mean.sum() == 1
    sheet.loc[mean, ["bd_rate_metric_percent", "bd_rate_psnr_percent", "bd_rate_psnr_low", "bd_rate_psnr_high"]] = [
        "-12.5", "-20", "-25", "-15"]
    sheet.to_csv(stated / "sheet.csv", index=False)
    resum(stated)
    assert main(["leaderboard", str(stated), "--out", str(tmp_path / "site")]) == 0
    row = entry_rows(tmp_path / "site")["stated"]
    assert row["bd"]["paper-vtm"]["mean"] == -12.5 and row["bd_interval"]["paper-vtm"]["mean"] is None
    assert row["bd_psnr"]["paper-vtm"]["mean"] == -20 and row["bd_psnr_interval"]["paper-vtm"]["mean"] == [-25, -15]
    html = (tmp_path / "site" / "index.html").read_text()
    main_row = html.split('<tr class="main">')[3].split("</tr>")[0]
    assert ">-12.50<" in main_row and "-20.00" not in main_row  # the first screen: the task metric's mean
    assert ">-20.00 [-25.0, -15.0]<" in html and "BD-rate PSNR" in html
    assert "no task has a BD-rate" in html  # the sheet's note on the other anchor, in the details


class _Columns(HTMLParser):
    """Per board table: the sortable headings' data-col values and the number of cells of each main row."""

    def __init__(self):
        super().__init__()
        self.tables, self.depth, self.in_main = [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.depth += 1
            if "board" in attrs.get("class", ""):
                self.tables.append({"cols": [], "rows": []})
        elif self.depth != 1:
            return
        elif tag == "th" and "data-col" in attrs:
            self.tables[-1]["cols"].append(int(attrs["data-col"]))
        elif tag == "tr":
            self.in_main = attrs.get("class") == "main"
            if self.in_main:
                self.tables[-1]["rows"].append(0)
        elif tag == "td" and self.in_main:
            self.tables[-1]["rows"][-1] += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self.depth -= 1


def test_every_body_column_has_exactly_one_sortable_heading(bundles, tmp_path):
    # each entry is a <tbody> of a main row and a details row: the script sorts bodies by the main row's cells
    site = tmp_path / "site"
    assert main(["leaderboard", str(bundles), "--out", str(site)]) == 0
    parser = _Columns()
    parser.feed((site / "index.html").read_text())
    assert len(parser.tables) == 2
    for table in parser.tables:
        width = set(table["rows"])
        assert len(width) == 1, width
        assert sorted(table["cols"]) == list(range(width.pop()))


# ---------------------------------------------------------------- a stranger's bundles and reports


def bundle_sha(bundle: Path) -> str:
    return hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()


def board_of(site: Path) -> dict:
    return json.loads((site / "leaderboard.json").read_text())


def entry_rows(site: Path) -> dict[str, dict]:
    return {r["bundle"]: r for g in board_of(site)["groups"] for r in g["rows"] if r["kind"] == "entry"}


def report_of_a(bundles: Path, **changes) -> dict:
    """a's real crosscheck report (verdict 'pass with notes'), with `changes`."""
    report = json.loads((bundles / "a.crosscheck" / "crosscheck.json").read_text())
    report.update(changes)
    return report


def write_report(folder: Path, report: dict, html: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "crosscheck.json").write_text(json.dumps(report))
    if html is not None:
        (folder / "crosscheck.html").write_text(html)
    return folder


def failed(report: dict, check: str = "decode") -> dict:
    """The report as a checker whose `check` failed writes it (verdict and check agree)."""
    report = json.loads(json.dumps(report))
    next(c for c in report["checks"] if c["name"] == check).update(verdict="fail", problems=["it failed"])
    return {**report, "verdict": "fail", "ok": False}


def test_a_task_name_from_a_bundle_never_writes_outside_out(bundles, tmp_path):
    evil = tmp_path / "in" / "evil"
    shutil.copytree(bundles / "b", evil)
    sheet = (evil / "sheet.csv").read_text()
    assert ",cls," in sheet
    (evil / "sheet.csv").write_text(sheet.replace(",cls,", ",t/../../../escaped,"))
    resum(evil)
    site = tmp_path / "deep" / "site"
    before = set(tmp_path.rglob("*"))
    assert main(["leaderboard", str(evil), str(bundles / "a"), "--out", str(site)]) == 0
    written = set(tmp_path.rglob("*")) - before
    assert written and all(p.is_relative_to(site) or p == site.parent for p in written), written
    board = board_of(site)
    assert len(board["excluded"]) == 1 and "'task'" in board["excluded"][0] and "safe file name" in board["excluded"][0]
    assert list(entry_rows(site)) == ["a"]


def test_no_file_is_written_through_a_link_leading_out_of_the_site(bundles, tmp_path, capsys):
    elsewhere, site = tmp_path / "elsewhere", tmp_path / "site"
    elsewhere.mkdir()
    site.mkdir()
    (site / "figures").symlink_to(elsewhere)
    (site / "crosschecks").symlink_to(elsewhere)
    assert main(["leaderboard", str(bundles / "a"), "--out", str(site)]) == 1
    assert "outside" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_hand_made_crosscheck_report_is_not_counted_and_no_html_is_copied(bundles, tmp_path):
    folder, site = tmp_path / "in", tmp_path / "site"
    shutil.copytree(bundles / "b", folder / "b")
    sha = bundle_sha(folder / "b")
    script = "<script>alert('from the bundle')</script>"
    # what worked before: a bare JSON saying pass, and a page with a script
    write_report(folder / "b.crosscheck", {"bundle_sha256": sha, "verdict": "pass", "ok": True}, script)
    # a well-formed report whose stated verdict is not the one its checks give
    write_report(folder / "b.crosscheck-edited", {**failed(report_of_a(bundles, bundle_sha256=sha)), "verdict": "pass"})
    # a genuine report, but of another bundle (a's), put next to b
    write_report(folder / "b.crosscheck-other", report_of_a(bundles), script)
    # a report lacking checks a crosscheck makes
    partial = report_of_a(bundles, bundle_sha256=sha)
    partial["checks"] = [c for c in partial["checks"] if c["name"] != "metrics"]
    write_report(folder / "b.crosscheck-partial", partial)
    assert main(["leaderboard", str(folder), "--out", str(site)]) == 0
    row = entry_rows(site)["b"]
    assert row["crosschecks"] == [] and row["verdict"] == "not crosschecked"
    reasons = "\n".join(row["not_counted"])
    assert len(row["not_counted"]) == 4
    assert "'schema'" in reasons and "'verdict'" in reasons and "another bundle" in reasons and "metrics" in reasons
    html = (site / "index.html").read_text()
    assert "not crosschecked" in html and ">pass<" not in html
    assert not any("alert(" in p.read_text(errors="replace") for p in site.rglob("*") if p.is_file())


def test_a_counted_reports_page_is_rendered_from_the_report_never_copied(bundles, tmp_path):
    folder, site = tmp_path / "in", tmp_path / "site"
    shutil.copytree(bundles / "b", folder / "b")
    report = report_of_a(bundles, bundle_sha256=bundle_sha(folder / "b"), checker="lab <i>C</i>")
    write_report(folder / "b.crosscheck", report, "<h1>pass</h1><script>alert('x')</script>")
    assert main(["leaderboard", str(folder), "--out", str(site)]) == 0
    (verdict,) = entry_rows(site)["b"]["crosschecks"]
    assert verdict["verdict"] == "pass with notes" and verdict["checker"] == "lab <i>C</i>"
    page = (site / verdict["report"]).read_text()
    assert "alert(" not in page and "<script" not in page and "decode" in page
    assert "lab &lt;i&gt;C&lt;/i&gt;" in (site / "index.html").read_text()


def test_every_verdict_is_shown_with_its_checker_and_a_fail_is_never_hidden(bundles, tmp_path):
    folder, site = tmp_path / "in", tmp_path / "site"
    shutil.copytree(bundles / "a", folder / "a")
    shutil.copytree(bundles / "a.crosscheck", folder / "a.crosscheck")  # pass with notes, no checker named
    write_report(folder / "a.crosscheck-labB", failed(report_of_a(bundles, checker="lab B")))
    given = write_report(tmp_path / "reports" / "labC", report_of_a(bundles, checker="lab C"))
    write_report(tmp_path / "reports" / "stray", report_of_a(bundles, bundle_sha256="0" * 64, checker="lab D"))
    assert main(["leaderboard", str(folder), "--out", str(site), "--crosscheck", str(given.parent),
                 "--crosscheck", str(given / "crosscheck.json")]) == 0  # labC given twice: one verdict
    row = entry_rows(site)["a"]
    assert [(c["verdict"], c["checker"]) for c in row["crosschecks"]] == [
        ("fail", "lab B"), ("pass with notes", "checker not named"), ("pass with notes", "lab C")]
    assert row["verdict"] == "fail"
    assert all((site / c["report"]).is_file() for c in row["crosschecks"])
    assert len({c["report"] for c in row["crosschecks"]}) == 3
    board = board_of(site)
    assert len(board["not_counted"]) == 1 and "about no bundle on this board" in board["not_counted"][0]
    main_row = (site / "index.html").read_text().split('<tr class="main">')[3].split("</tr>")[0]
    assert main_row.index(">fail<") < main_row.index(">pass with notes<") and "lab B" in main_row


def _tar_with_a_non_utf8_member(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        data = b"{}"
        for name in ("bundle/manifest.json", "bundle/\udcff.bin"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unreadable_bundles_are_left_out_with_the_reason_and_the_site_is_built(bundles, tmp_path, capsys):
    folder, site = tmp_path / "in", tmp_path / "site"
    shutil.copytree(bundles / "a", folder / "a")
    oops = folder / "oops"
    shutil.copytree(bundles / "b", oops)
    manifest = json.loads((oops / "manifest.json").read_text())
    manifest["dataset"] = "oops"
    (oops / "manifest.json").write_text(json.dumps(manifest))
    resum(oops)
    _tar_with_a_non_utf8_member(folder / "member.tar")
    _tar_with_a_non_utf8_member(folder / os.fsdecode(b"name-\xff.tar"))  # nor is its own file name
    assert main(["leaderboard", str(folder), "--out", str(site)]) == 0
    assert capsys.readouterr().err.count("left out") == 3
    excluded = board_of(site)["excluded"]
    assert len(excluded) == 3
    assert any("oops" in x and "'dataset'" in x for x in excluded)
    assert sum("not UTF-8" in x for x in excluded) == 2
    assert list(entry_rows(site)) == ["a"]
    html = (site / "index.html").read_bytes().decode("utf-8")  # the page itself stays UTF-8
    assert "name-\\xff.tar" in html


def test_anchor_curves_and_rows_come_from_the_checkers_ctc_never_from_a_bundle(bundles, tmp_path, monkeypatch):
    from harness.ctc import load_ctc
    from harness.curves import resolve_curve
    import harness.figures

    forged = tmp_path / "in" / "forged"
    shutil.copytree(bundles / "b", forged)
    lines = (forged / "sheet.csv").read_text().splitlines()
    header = lines[0].split(",")
    role, curve, bpfp = header.index("role"), header.index("curve"), header.index("bpfp")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[0] == "point" and cells[role] == "anchor":
            cells[bpfp] = str(float(cells[bpfp]) * 1000)  # the anchors made to look far worse
            out.append(",".join(cells))
            cells[curve] = "forged-anchor"
        out.append(",".join(cells))
    (forged / "sheet.csv").write_text("\n".join(out) + "\n")
    resum(forged)
    drawn = []
    real_plot = harness.figures.curve_plot
    monkeypatch.setattr(harness.figures, "curve_plot",
                        lambda task, curves, *a, **k: drawn.append((list(curves), k)) or real_plot(task, curves, *a, **k))
    site = tmp_path / "site"
    assert main(["leaderboard", str(forged), "--out", str(site)]) == 0
    group = board_of(site)["groups"][0]
    assert group["anchors"] == ["paper-vtm", "paper-hyperprior"]
    assert [r["name"] for r in group["rows"] if r["kind"] == "anchor"] == group["anchors"]
    (curves, options), = drawn
    from harness.figures import anchor_style

    assert all(group["anchor_styles"][a]["color"] == anchor_style(a)["color"] for a in group["anchors"])
    assert set(options["anchors"]) == set(group["anchors"])
    names = [c.name for c in curves]
    assert not any("forged" in n for n in names) and names.count("paper-vtm") == 1
    ctc = load_ctc()
    mine = next(c for c in curves if c.name == "paper-vtm").task("cls").bpfp.tolist()
    assert mine == resolve_curve("paper-vtm", ctc).task("cls").bpfp.tolist()


def test_an_anchor_is_drawn_in_one_style_chosen_by_its_name():
    from harness.figures import anchor_style, curve_styles

    shipped = ["paper-vtm", "paper-hyperprior", "mini-vtm", "mini-vvc", "mini-klt", "mini-hyperprior"]
    styles = [anchor_style(n) for n in shipped]
    assert len({s["color"] for s in styles}) == len({s["marker"] for s in styles}) == len(shipped)
    one = curve_styles(["zlib", "paper-vtm", "paper-hyperprior"], {"paper-vtm", "paper-hyperprior"})
    other = curve_styles(["paper-hyperprior", "mini-vtm", "paper-vtm", "x", "y"], {"paper-vtm", "paper-hyperprior", "mini-vtm"})
    assert one[1] == other[2] == anchor_style("paper-vtm") and one[2] == other[0]
    anchor_colours = {s["color"] for s in other[:3]}
    assert all(s["linestyle"] == "--" and s["color"] not in anchor_colours for s in other[3:])
    assert other[3]["color"] != other[4]["color"]


def test_the_first_screen_names_entries_verdicts_mean_bd_rates_and_submitters(bundles, tmp_path):
    folder, site = tmp_path / "in", tmp_path / "site"
    for name, options, submitter in (("l9", {"level": "9"}, {"url": "https://example.org/l9?a=1&b=2"}),
                                     ("l5", {"level": "5"}, {"url": "javascript:alert(1)", "proponent": "P5"}),
                                     ("titled", {}, {"title": "My <codec>", "url": "file:///etc/passwd"})):
        shutil.copytree(bundles / "b", folder / name)
        manifest = json.loads((folder / name / "manifest.json").read_text())
        manifest["codec"]["options"] = options
        manifest["submitter"] = submitter
        (folder / name / "manifest.json").write_text(json.dumps(manifest))
        resum(folder / name)
    shutil.copytree(bundles / "a", folder / "a")
    shutil.copytree(bundles / "b", folder / "b")  # same codec and options as a: told apart by sha256
    assert main(["leaderboard", str(folder), "--out", str(site)]) == 0
    group = board_of(site)["groups"][0]
    rows = {r["bundle"]: r for r in group["rows"] if r["kind"] == "entry"}
    assert rows["l9"]["name"] == "zlib 1.0 (level=9)" and rows["l5"]["name"] == "zlib 1.0 (level=5)"
    assert rows["titled"]["name"] == "My <codec>"
    names = [r["name"] for r in group["rows"]]
    assert len(set(names)) == len(names)
    assert rows["a"]["name"].endswith(f"[{rows['a']['bundle_sha256'][:8]}]")
    assert [rows[n]["url"] for n in ("l9", "l5", "titled")] == ["https://example.org/l9?a=1&b=2", None, None]
    assert rows["l9"]["samples"] == {"cls": "2"}
    html = (site / "index.html").read_text()
    assert 'href="https://example.org/l9?a=1&amp;b=2"' in html and "My &lt;codec&gt;" in html
    assert 'href="javascript:' not in html and 'href="file:' not in html  # shown as text in the details only
    assert "(2 samples)" in html and html.count("<details>") == len(group["rows"])
    assert "EncT <span class=\"self\">(self-reported)</span>" in html and "enc_ratio_self_reported" in rows["a"]
    # the first screen: entry, verdicts, one mean BD-rate per anchor, submitter; nothing else
    headings = html.split("<thead>")[1].split("</thead>")[0]
    assert headings.count("<th") == 3 + len(group["anchors"])
    plain = re.sub(r"<[^>]+>", "", headings)  # the anchors' swatches are markup
    assert "entry" in plain and "crosscheck (checker)" in plain and "submitter" in plain
    for anchor in group["anchors"]:  # after its swatch (one glyph)
        assert re.search(rf"BD-rate vs . {re.escape(anchor)}mean over tasks, task metric", plain), anchor
    main_rows = [part.split("</tr>")[0] for part in html.split('<tr class="main">')[1:]]
    l5 = next(r for r in main_rows if "level=5" in r)
    assert l5.count("<td") == 3 + len(group["anchors"]) and "P5" in l5 and "not crosschecked" in l5
