"""`harness leaderboard BUNDLE_OR_DIR... --out SITE`: a static site of submission bundles.

One table per CTC sha256 (results under other test conditions are never mixed in one table). Its
first screen, per entry: the entry's name (the proponent's title, else codec, version and options),
every crosscheck verdict with who reported it, the mean BD-rate on the task metric against each
anchor, and the proponent; one click opens the per-task detail (BD-rates, samples, the proponent's
own time ratios, bundle and crosscheck reports). The anchors are rows too. Per task, a picture of
every entry's rate-accuracy curve over the anchors. leaderboard.json holds the same table.

Bundles and crosscheck reports come from strangers, so:
- a bundle is read through the typed readers only (`read_manifest`, a checked sheet.csv); one that
  cannot be read, or whose files do not match its SHA256SUMS, is left out with the reason and the
  site is still built;
- every file written lies under --out: names from a bundle (tasks) must be plain file names, and
  each final path is checked to stay inside --out (also through links);
- a crosscheck report counts only when `read_report` accepts it (its verdict is the one its checks
  give) and `counts_for` says it is a complete check of this very bundle; its page is rendered here
  from the typed report, never copied; every counted verdict is shown with its checker (a fail is
  never hidden by a pass); reports that do not count are listed with the reason;
- the anchors (names, curves, their BD-rates) are the checker's shipped CTC's, never a bundle's;
- encode/decode time ratios are the proponent's own measurements and labelled so.
The page needs no network: styles and the small sorting script are inline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
import glob
from importlib import resources
import io
import math
from pathlib import Path
import shutil
import tempfile
from typing import Any
from urllib.parse import urlsplit

import jinja2
import pandas as pd

from harness.bundle import MANIFEST, SUMS, extract_archive, write_json, write_text
from harness.comparison import finite
from harness.crosscheck import Check, check_integrity, render_report_page
from harness.curves import Curve
from harness.errors import HarnessError
from harness.formats.crosscheck import CrosscheckReport, counts_for, read_report
from harness.formats.manifest import Manifest, read_manifest
from harness.safe_io import inside, name_problem, read_regular, sha256_regular
from harness.sheet_layout import BD_COLUMNS, COLUMNS

LEADERBOARD_SCHEMA = "fcm-harness-leaderboard/2"
REPORT = "crosscheck.json"
MAX_SHEET_BYTES = 64 << 20
NUMERIC = ("samples", "bpfp", "metric", "mse", *BD_COLUMNS, "enc_time_ratio", "dec_time_ratio")
BD_ONS = ("metric", "psnr")  # the axes shown: the task metric (first screen) and PSNR of the features (details)
# worst first: a fail is listed before any pass
VERDICT_ORDER = {"fail": 0, "pass with notes": 1, "pass": 2}


@dataclass(frozen=True)
class FoundReport:
    """A crosscheck report read through `read_report`, and where it was found."""
    path: Path
    report: CrosscheckReport


@dataclass
class Entry:
    name: str  # the bundle's file name (display only)
    manifest: Manifest
    bundle_sha256: str
    sheet: pd.DataFrame
    crosschecks: list[FoundReport] = field(default_factory=list)
    not_counted: list[str] = field(default_factory=list)  # reports about it that do not count, and why


@dataclass
class SiteFiles:
    html: Path
    json: Path
    figures: list[Path] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # bundles left out, with the reason
    not_counted: list[str] = field(default_factory=list)  # crosscheck reports not counted, with the reason


def shown(text: object, limit: int = 2000) -> str:
    """Text fit for the page and the JSON: a name that is not UTF-8 (surrogates from the file
    system or an archive) is shown with its bytes escaped (\\xff) instead of breaking the writer."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[:limit]
    except UnicodeEncodeError:  # a surrogate no file system made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def find_bundles(paths: Iterable[Path]) -> list[Path]:
    """Bundle directories and archives among `paths` (a folder of bundles is searched one level)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / MANIFEST).is_file() or (path.is_file() and path.suffix == ".tar"):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
            found += sorted(p for p in path.glob("*.tar") if not (p.with_suffix("") / MANIFEST).is_file())
        else:
            raise HarnessError(f"{shown(path)}: neither a bundle (directory with {MANIFEST}, or .tar) "
                               "nor a folder of bundles")
    return found


def read_sheet(path: Path) -> pd.DataFrame:
    """A bundle's sheet.csv, every value text first (a task named 'NA' stays 'NA'), numbers where the
    layout has numbers; the names that become file names (tasks) must be plain file names."""
    try:
        text = read_regular(path, limit=MAX_SHEET_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        sheet = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise HarnessError(f"{path}: not a readable sheet ({shown(exc, 200)})") from None
    missing = [c for c in COLUMNS if c not in sheet.columns]
    if missing:
        raise HarnessError(f"{path}: missing column(s) {', '.join(missing)}")
    sheet = sheet[sheet.section.isin(("point", "summary"))].reset_index(drop=True)
    for number, task in enumerate(sheet.task):
        problem = name_problem(task)
        if problem:
            raise HarnessError(f"{path}: field 'task' of data row {number + 1}: {problem}")
    for column in NUMERIC:
        sheet[column] = pd.to_numeric(sheet[column], errors="coerce")
    return sheet


def load_entry(path: Path, work: Path) -> Entry:
    """A bundle's typed manifest and checked sheet, after its files were checked against its SHA256SUMS."""
    if not path.is_file():
        return _read_entry(path, path)
    root = extract_archive(path, work / str(len(list(work.iterdir()))))
    try:
        return _read_entry(path, root)
    except HarnessError as exc:  # name the archive, not the folder it was unpacked into (gone by then)
        raise HarnessError(str(exc).replace(str(root), str(path))) from None


def _read_entry(path: Path, root: Path) -> Entry:
    check = Check("integrity")
    check_integrity(root, check)
    if check.verdict == "fail":
        raise HarnessError(check.problems[0])
    manifest = read_manifest(root)
    sha = sha256_regular(root / SUMS, 64 << 20)  # pins every file of the bundle
    return Entry(path.name.removesuffix(".tar"), manifest, sha, read_sheet(root / "sheet.csv"))


# ---------------------------------------------------------------- crosscheck reports


def report_paths(path: Path) -> list[Path]:
    """crosscheck.json files at `path`: the file itself, a report folder, or a folder of report folders."""
    path = Path(path)
    if path.is_file():
        return [path]
    if (path / REPORT).is_file():
        return [path / REPORT]
    if path.is_dir():
        return sorted(p / REPORT for p in path.iterdir() if (p / REPORT).is_file())
    raise HarnessError(f"--crosscheck {shown(path)}: neither a {REPORT} nor a folder holding one")


def sibling_reports(bundle: Path) -> list[Path]:
    """The reports next to a bundle: <bundle>.crosscheck*/crosscheck.json (one per checker)."""
    name = bundle.name.removesuffix(".tar")
    return sorted(p / REPORT for p in bundle.parent.glob(glob.escape(name) + ".crosscheck*") if (p / REPORT).is_file())


def read_reports(paths: Iterable[Path], refused: list[str]) -> list[FoundReport]:
    """Each report read through `read_report`; the ones it refuses go to `refused` with the reason."""
    found = []
    for path in paths:
        try:
            found.append(FoundReport(path, read_report(path)))
        except HarnessError as exc:
            refused.append(f"not counted: {shown(exc, 400)}")
    return found


def attach_reports(entries: list[Entry], siblings: dict[str, list[Path]], given: Sequence[Path],
                   refused: list[str]) -> None:
    """Give each entry the reports that count for it: its sibling reports, and the reports given with
    --crosscheck that are about it. Reports that count for no entry are listed in `refused`."""
    by_sha = {e.bundle_sha256: e for e in entries}
    for entry in entries:
        for found in read_reports(siblings.get(entry.bundle_sha256, []), entry.not_counted):
            _count(entry, found)
    for found in read_reports([p for d in given for p in report_paths(d)], refused):
        entry = by_sha.get(found.report.bundle_sha256)
        if entry is None:
            refused.append(f"{shown(found.path)}: not counted: about no bundle on this board "
                           f"(bundle sha256 {found.report.bundle_sha256[:16] or 'empty'})")
        else:
            _count(entry, found)


def _count(entry: Entry, found: FoundReport) -> None:
    why = counts_for(found.report, entry.bundle_sha256)
    if why:
        entry.not_counted.append(f"{shown(found.path)}: not counted: {why}")
    elif all(found.report != f.report for f in entry.crosschecks):  # one report found twice is one verdict
        entry.crosschecks.append(found)
    entry.crosschecks.sort(key=lambda f: (VERDICT_ORDER.get(f.report.verdict, 0), f.report.checker))


# ---------------------------------------------------------------- rows


def http_url(value: str | None) -> str | None:
    """The proponent's url when it is a plain http(s) address (never javascript:, data:, file:)."""
    if not value or any(c <= " " or c in "\"'<>\\" for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _samples(sheet: pd.DataFrame, tasks: list[str]) -> dict[str, str]:
    """Samples per task the entry's rate points were measured on, from the sheet's point rows."""
    points = sheet[(sheet.section == "point") & (sheet.role == "test")]
    out = {}
    for task in tasks:
        counts = sorted({int(v) for v in points[points.task == task].samples if finite(v) is not None})
        out[task] = "n/a" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return out


def _per_anchor(summary: pd.DataFrame, anchors: list[str], tasks: list[str], column: str) -> dict:
    values: dict[str, dict[str, Any]] = {}
    for anchor in anchors:
        rows = summary[summary.anchor == anchor]
        values[anchor] = {task: (rows[rows.task == task][column].iloc[0] if (rows.task == task).any() else None)
                          for task in [*tasks, "mean"]}
    return values


def _numbers(summary: pd.DataFrame, anchors: list[str], tasks: list[str], column: str) -> dict:
    return {a: {t: finite(v) for t, v in per.items()} for a, per in _per_anchor(summary, anchors, tasks, column).items()}


def _intervals(summary: pd.DataFrame, anchors: list[str], tasks: list[str], on: str) -> dict:
    """The sheet's bootstrap interval [low, high] of each BD-rate on `on`, or None where it has none."""
    low = _numbers(summary, anchors, tasks, f"bd_rate_{on}_low")
    high = _numbers(summary, anchors, tasks, f"bd_rate_{on}_high")
    return {a: {t: ([low[a][t], high[a][t]] if low[a][t] is not None and high[a][t] is not None else None)
                for t in low[a]} for a in anchors}


def _bd_fields(summary: pd.DataFrame, anchors: list[str], tasks: list[str]) -> dict[str, Any]:
    """An entry's BD-rates as its sheet states them (the first screen shows the metric's mean); a
    crosscheck's bd-rates check recomputes them."""
    notes = {a: {t: shown(v, 300) for t, v in per.items() if v not in (None, "")}
             for a, per in _per_anchor(summary, anchors, tasks, "note").items()}
    return {"bd": _numbers(summary, anchors, tasks, "bd_rate_metric_percent"),
            "bd_interval": _intervals(summary, anchors, tasks, "metric"),
            "bd_psnr": _numbers(summary, anchors, tasks, "bd_rate_psnr_percent"),
            "bd_psnr_interval": _intervals(summary, anchors, tasks, "psnr"), "bd_notes": notes}


def _verdicts(entry: Entry, links: list[str]) -> list[dict[str, Any]]:
    return [{"verdict": f.report.verdict, "checker": f.report.checker or "checker not named", "report": link}
            for f, link in zip(entry.crosschecks, links)]


def _entry_row(entry: Entry, anchors: list[str], tasks: list[str], links: list[str]) -> dict[str, Any]:
    summary = entry.sheet[entry.sheet.section == "summary"]
    manifest = entry.manifest
    submitter = {k: shown(v, 200) for k, v in manifest.submitter.items()}
    verdicts = _verdicts(entry, links)
    return {"kind": "entry", "id": entry.bundle_sha256[:16], "name": shown(manifest.title, 200),
            "url": http_url(manifest.submitter.get("url")), "bundle": shown(entry.name, 255),
            "bundle_sha256": entry.bundle_sha256, "dataset": shown(manifest.dataset.name, 200),
            "codec": {"name": manifest.codec.name, "version": shown(manifest.codec.version, 80),
                      "options": {shown(k, 200): shown(v, 200) for k, v in manifest.codec.options.items()}},
            "submitter": submitter, "samples": _samples(entry.sheet, tasks),
            **_bd_fields(summary, anchors, tasks),
            "enc_ratio_self_reported": _numbers(summary, anchors, tasks, "enc_time_ratio"),
            "dec_ratio_self_reported": _numbers(summary, anchors, tasks, "dec_time_ratio"),
            "crosschecks": verdicts, "verdict": verdicts[0]["verdict"] if verdicts else "not crosschecked",
            "not_counted": entry.not_counted}


def shipped_ctc(sha256: str):
    """The CTC shipped with this harness that has `sha256`, or None (as a crosscheck finds it)."""
    from harness.ctc import checker_ctc
    from harness.errors import CTCError

    try:
        return checker_ctc(sha256, Path("leaderboard"))
    except CTCError:
        return None


def anchor_curves(anchors: list[str], ctc) -> dict[str, Curve]:
    """The anchors' curves from the checker's own anchor sheets (never from a bundle's sheet)."""
    from harness.curves import resolve_curve

    curves = {}
    for name in anchors:
        try:
            curves[name] = resolve_curve(name, ctc)
        except HarnessError:
            continue
    return curves


def _anchor_bd(name: str, tasks: list[str], anchors: list[str], curves: dict[str, Curve], ctc) -> dict[str, Any]:
    """Anchor `name` against each anchor, from the checker's anchor sheets, by the one comparison
    every page uses (harness.comparison: BD-rates below the CTC's overlap withheld with the reason)."""
    from harness.comparison import build

    def board_tasks(curve: Curve) -> Curve:  # the mean is over this board's tasks, as the entries' is
        return Curve(curve.name, curve.points[curve.points.task.isin(tasks)].reset_index(drop=True), curve.source)

    empty = {a: dict.fromkeys([*tasks, "mean"]) for a in anchors}
    fields: dict[str, Any] = {"bd": _copy(empty), "bd_interval": _copy(empty), "bd_psnr": _copy(empty),
                              "bd_psnr_interval": _copy(empty), "bd_notes": {a: {} for a in anchors}}
    for other in anchors:
        if other == name:
            fields["bd"][other] = fields["bd_psnr"][other] = dict.fromkeys([*tasks, "mean"], 0.0)
            continue
        if name not in curves or other not in curves:
            continue
        try:
            cs = build(board_tasks(curves[name]), [board_tasks(curves[other])], ctc, ons=BD_ONS, bootstrap=0)
        except HarnessError as exc:
            fields["bd_notes"][other]["mean"] = shown(exc, 300)
            continue
        for result in cs.anchors:
            for key, on in (("bd", "metric"), ("bd_psnr", "psnr")):
                for row in result.tasks:
                    if row.task in tasks:
                        fields[key][other][row.task] = row.on(on).value
                        if row.on(on).reason and on == "metric":
                            fields["bd_notes"][other][row.task] = shown(row.on(on).reason, 300)
                fields[key][other]["mean"] = result.mean(on).value
    return fields


def _copy(value: dict) -> dict:  # one dict per anchor, not one shared
    return {k: dict(v) for k, v in value.items()}


def _anchor_rows(anchors: list[str], tasks: list[str], curves: dict[str, Curve], ctc) -> list[dict[str, Any]]:
    rows = []
    for name in anchors:
        ratio = {a: dict.fromkeys([*tasks, "mean"], 1.0 if a == name else None) for a in anchors}
        rows.append({"kind": "anchor", "id": f"anchor-{len(rows)}", "name": name, "url": None, "bundle": "",
                     "bundle_sha256": "", "dataset": "", "codec": {"name": "", "version": "", "options": {}},
                     "submitter": {}, "samples": dict.fromkeys(tasks, ""), **_anchor_bd(name, tasks, anchors, curves, ctc),
                     "enc_ratio_self_reported": ratio, "dec_ratio_self_reported": ratio,
                     "crosschecks": [], "verdict": "anchor", "not_counted": []})
    return rows


def _distinct_names(rows: list[dict[str, Any]]) -> None:
    """Two entries of one title (one codec, same options) are told apart by their bundle sha256."""
    names = [r["name"] for r in rows]
    for row in rows:
        if row["kind"] == "entry" and names.count(row["name"]) > 1:
            row["name"] = f"{row['name']} [{row['bundle_sha256'][:8]}]"


def entry_curves(members: list[Entry], names: dict[str, str]) -> list[Curve]:
    """Each entry's own test curve from its sheet (a bundle's anchor rows are ignored)."""
    curves = []
    for entry in members:
        sheet = entry.sheet
        points = sheet[(sheet.section == "point") & (sheet.role == "test")]
        # only points a log-rate picture can show (inf, nan or non-positive rates would bend its axes)
        points = points[(points.bpfp > 0) & points.bpfp.map(math.isfinite) & points.metric.map(math.isfinite)]
        if len(points):
            frame = points[["task", "bpfp", "metric", "mse"]].reset_index(drop=True)
            curves.append(Curve(names[entry.bundle_sha256][:60], frame, entry.name))  # a legend, not a page
    return curves


# ---------------------------------------------------------------- the site


def site_path(out: Path, relative: str) -> Path:
    """`out/relative`, refused unless it stays inside the site folder (also through links)."""
    return inside(out, relative, f"leaderboard site {out}", "file name")


def _figures(out: Path, sha: str, tasks: list[str], curves: list[Curve], anchors: list[str],
             members: list[Entry], files: SiteFiles) -> list[dict[str, str]]:
    from harness.figures import curve_plot

    figures = []
    for task in tasks:
        if not any(task in c.tasks and not c.task(task).metric.isna().all() for c in curves):
            continue
        labels = [str(n) for e in members for n in e.sheet[e.sheet.task == task].metric_name if str(n)]
        stem = f"figures/{sha[:12]}-{task}-ra"
        png, svg = site_path(out, stem + ".png"), site_path(out, stem + ".svg")
        # curve_plot swaps the last suffix for .png and .svg: give it one, as a task name may hold dots
        written = curve_plot(task, curves, "metric", shown(labels[0], 60) if labels else "task metric",
                             png.with_suffix(".fig"), anchors=anchors)
        if written != [png, svg]:
            raise HarnessError(f"{out}: the pictures of {task} were not written where expected")
        figures.append({"task": task, "src": stem + ".png"})
        files.figures.append(png)
    return figures


def _group(out: Path, sha: str, members: list[Entry], files: SiteFiles) -> dict[str, Any]:
    ctc = members[0].manifest.ctc
    shipped = shipped_ctc(sha)
    anchors = list(shipped.anchors) if shipped else []  # the checker's CTC names them, never a bundle
    curves = anchor_curves(anchors, shipped) if shipped else {}
    tasks = sorted({str(t) for e in members for t in e.sheet[e.sheet.section == "point"].task})
    links: dict[str, list[str]] = {}
    for entry in members:
        links[entry.bundle_sha256] = []
        for number, found in enumerate(entry.crosschecks):
            relative = f"crosschecks/{entry.bundle_sha256[:16]}-{number}.html"
            write_text(site_path(out, relative), render_report_page(found.report))  # never the file's own HTML
            links[entry.bundle_sha256].append(relative)
    rows = _anchor_rows(anchors, tasks, curves, shipped) + [_entry_row(e, anchors, tasks, links[e.bundle_sha256])
                                                   for e in members]
    _distinct_names(rows)
    names = {r["bundle_sha256"]: r["name"] for r in rows if r["kind"] == "entry"}
    plotted = [curves[a] for a in anchors if a in curves] + entry_curves(members, names)
    figures = _figures(out, sha, tasks, plotted, anchors, members, files)
    return {"ctc": {"name": ctc.name, "version": ctc.version, "sha256": sha, "shipped": shipped is not None},
            "anchors": anchors, "anchor_styles": {a: _swatch(a) for a in anchors}, "tasks": tasks, "rows": rows,
            "figures": figures}


# the pictures' markers as text, so the table shows each anchor as its curves are drawn
_GLYPHS = {"o": "\u25cf", "s": "\u25a0", "D": "\u25c6", "^": "\u25b2", "v": "\u25bc", "P": "\u271a",
           "X": "\u2716", "p": "\u2b1f"}


def _swatch(anchor: str) -> dict[str, str]:
    from harness.figures import anchor_style

    style = anchor_style(anchor)
    return {"color": style["color"], "glyph": _GLYPHS.get(style["marker"], "\u25cf")}


def _load_all(paths: list[Path], work: Path, files: SiteFiles) -> tuple[list[Entry], dict[str, list[Path]]]:
    entries, siblings = [], {}
    for path in find_bundles(paths):
        try:
            entry = load_entry(path, work)
        except HarnessError as exc:
            files.excluded.append(shown(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a stranger's bundle never stops the board; say what broke
            files.excluded.append(f"{shown(path)}: cannot be read ({type(exc).__name__}: {shown(exc, 300)})")
            continue
        siblings.setdefault(entry.bundle_sha256, []).extend(sibling_reports(path))
        if all(e.bundle_sha256 != entry.bundle_sha256 for e in entries):  # the same bundle given twice: once
            entries.append(entry)
    return entries, {sha: sorted(set(p)) for sha, p in siblings.items()}


def build_site(paths: list[Path], out: Path, crosschecks: Sequence[Path] = ()) -> SiteFiles:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = SiteFiles(out / "index.html", out / "leaderboard.json")
    work = Path(tempfile.mkdtemp(prefix=".leaderboard-", dir=out))
    try:
        entries, siblings = _load_all(paths, work, files)
        attach_reports(entries, siblings, crosschecks, files.not_counted)
        by_ctc: dict[str, list[Entry]] = {}
        for entry in entries:
            by_ctc.setdefault(entry.manifest.ctc.sha256, []).append(entry)
        groups = [_group(out, sha, members, files)
                  for sha, members in sorted(by_ctc.items(), key=lambda kv: (kv[1][0].manifest.ctc.name, kv[0]))]
        record = {"schema": LEADERBOARD_SCHEMA, "groups": groups, "excluded": files.excluded,
                  "not_counted": files.not_counted,
                  "times": "encode/decode time ratios are the proponent's own measurements (self-reported)"}
        write_json(files.json, {**record, "groups": [{k: v for k, v in g.items() if k != "figures"} | {
            "figures": [f["src"] for f in g["figures"]]} for g in groups]})
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("harness_reports"))),
                                 undefined=jinja2.StrictUndefined, autoescape=True)
        write_text(files.html, env.get_template("leaderboard.html.j2").render(**record, fmt=_fmt))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return files


def _fmt(value: float | None, pattern: str = "%+.2f", interval: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return pattern % value + (f" [{interval[0]:+.1f}, {interval[1]:+.1f}]" if interval else "")
