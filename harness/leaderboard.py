"""`harness leaderboard BUNDLE_OR_DIR... --out SITE`: a static site of submission bundles.

One table per CTC sha256 (results under other test conditions are never mixed in one table):
per-task BD-rate against each anchor and their mean, encode/decode time ratios, crosscheck
status (linked to its report when BUNDLE.crosscheck/crosscheck.json sits next to the bundle and
is about this very bundle), submitter fields; the anchors are rows too. Per task, a picture of
every entry's rate-accuracy curve over the anchors. leaderboard.json holds the same table.

Everything is read from the bundles' own files (manifest.json, sheet.csv), which are untrusted:
a bundle whose files do not match its SHA256SUMS is left out and listed with the reason. The
page needs no network: styles and the small sorting script are inline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
import io
import math
from pathlib import Path
import shutil
import tempfile
from typing import Any

import jinja2
import pandas as pd

from harness.bundle import MANIFEST, SUMS, extract_archive, load_json_file, write_json, write_text
from harness.crosscheck import Check, check_integrity
from harness.curves import Curve
from harness.errors import HarnessError
from harness.npyio import atomic_write_bytes
from harness.safe_io import read_regular
from harness.sheet_layout import COLUMNS

LEADERBOARD_SCHEMA = "fcm-harness-leaderboard/1"


@dataclass
class Entry:
    name: str
    manifest: dict
    bundle_sha256: str
    sheet: pd.DataFrame
    crosscheck: dict | None = None
    crosscheck_html: Path | None = None


@dataclass
class SiteFiles:
    html: Path
    json: Path
    figures: list[Path] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def find_bundles(paths: list[Path]) -> list[Path]:
    """Bundle directories and archives among `paths` (a folder of bundles is searched one level)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / MANIFEST).is_file() or (path.is_file() and path.suffix == ".tar"):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
            found += sorted(p for p in path.glob("*.tar") if not (p.with_suffix("") / MANIFEST).is_file())
        else:
            raise HarnessError(f"{path}: neither a bundle (directory with {MANIFEST}, or .tar) nor a folder of bundles")
    return found


def load_entry(path: Path, work: Path) -> Entry:
    """A bundle's manifest and sheet, after its files were checked against its SHA256SUMS."""
    root = extract_archive(path, work / f"{len(list(work.iterdir()))}") if path.is_file() else path
    check = Check("integrity")
    check_integrity(root, check)
    if check.verdict == "fail":
        raise HarnessError(f"{path}: {check.problems[0]}")
    manifest = load_json_file(root / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("ctc"), dict) \
            or not isinstance(manifest.get("codec"), dict):
        raise HarnessError(f"{root / MANIFEST}: not a bundle manifest")
    import hashlib

    sha = hashlib.sha256(read_regular(root / SUMS)).hexdigest()  # pins every file of the bundle
    text = read_regular(root / "sheet.csv", limit=64 << 20).decode("utf-8", errors="replace")
    try:
        sheet = pd.read_csv(io.StringIO(text), keep_default_na=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise HarnessError(f"{root / 'sheet.csv'}: not a readable sheet ({exc})") from None
    missing = [c for c in COLUMNS if c not in sheet.columns]
    if missing:
        raise HarnessError(f"{root / 'sheet.csv'}: missing column(s) {', '.join(missing)}")
    for column in ("bpfp", "metric", "mse", "bd_rate_metric_percent", "bd_rate_mse_percent", "enc_time_ratio",
                   "dec_time_ratio"):
        sheet[column] = pd.to_numeric(sheet[column], errors="coerce")
    name = path.name.removesuffix(".tar")
    entry = Entry(name, manifest, sha, sheet)
    report = path.with_name(name + ".crosscheck") / "crosscheck.json"
    if report.is_file():
        try:
            data = load_json_file(report)
        except HarnessError:
            data = None
        if isinstance(data, dict):
            entry.crosscheck = data
            html = report.with_name("crosscheck.html")
            entry.crosscheck_html = html if html.is_file() else None
    return entry


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _crosscheck_status(entry: Entry) -> dict[str, Any]:
    if entry.crosscheck is None:
        return {"verdict": "not crosschecked", "report": None}
    if entry.crosscheck.get("bundle_sha256") != entry.bundle_sha256:
        return {"verdict": "crosscheck of another bundle", "report": None}
    verdict = str(entry.crosscheck.get("verdict", "?"))[:40]
    link = f"crosschecks/{entry.bundle_sha256[:16]}.html" if entry.crosscheck_html else None
    return {"verdict": verdict, "report": link}


def _entry_row(entry: Entry, anchors: list[str], tasks: list[str]) -> dict[str, Any]:
    summary = entry.sheet[entry.sheet.section == "summary"]
    bd: dict[str, dict[str, float | None]] = {}
    enc, dec = {}, {}
    for anchor in anchors:
        rows = summary[summary.anchor == anchor]
        bd[anchor] = {task: _number(rows[rows.task == task].bd_rate_metric_percent.iloc[0])
                      if (rows.task == task).any() else None for task in [*tasks, "mean"]}
        mean = rows[rows.task == "mean"]
        enc[anchor] = _number(mean.enc_time_ratio.iloc[0]) if len(mean) else None
        dec[anchor] = _number(mean.dec_time_ratio.iloc[0]) if len(mean) else None
    codec = entry.manifest["codec"]
    submitter = entry.manifest.get("submitter") if isinstance(entry.manifest.get("submitter"), dict) else {}
    return {"kind": "entry", "name": f"{codec.get('name')} {codec.get('version')}", "bundle": entry.name,
            "bundle_sha256": entry.bundle_sha256, "dataset": str(entry.manifest.get("dataset", {}).get("name")),
            "options": codec.get("options", {}), "submitter": {k: str(v)[:200] for k, v in submitter.items()},
            "bd": bd, "enc_ratio": enc, "dec_ratio": dec, "crosscheck": _crosscheck_status(entry)}


def shipped_ctc(sha256: str):
    """The CTC shipped with this harness that has `sha256`, or None."""
    from harness.ctc import builtin_ctc_dir, builtin_ctc_names, hash_directory, load_ctc

    for name in builtin_ctc_names():
        if hash_directory(builtin_ctc_dir(name)) == sha256:
            return load_ctc(builtin_ctc_dir(name))
    return None


def _anchor_bd(name: str, other: str, tasks: list[str], ctc) -> dict[str, float | None]:
    """BD-rate (task metric) of anchor `name` against anchor `other`, when this harness ships the CTC."""
    from harness.curves import compare, mean_bd_rate, resolve_curve

    empty: dict[str, float | None] = dict.fromkeys([*tasks, "mean"])
    if name == other:
        return dict.fromkeys([*tasks, "mean"], 0.0)
    if ctc is None:
        return empty
    try:
        rows = compare(resolve_curve(other, ctc), resolve_curve(name, ctc), on="metric")
    except HarnessError:
        return empty
    values = {r.task: (_number(r.rate.value) if r.rate.ok else None) for r in rows if r.task in tasks}
    return {**empty, **values, "mean": mean_bd_rate([r for r in rows if r.task in tasks])[0]}


def _anchor_rows(anchors: list[str], tasks: list[str], ctc=None) -> list[dict[str, Any]]:
    rows = []
    for name in anchors:
        bd = {other: _anchor_bd(name, other, tasks, ctc) for other in anchors}
        rows.append({"kind": "anchor", "name": name, "bundle": "", "bundle_sha256": "", "dataset": "",
                     "options": {}, "submitter": {}, "bd": bd,
                     "enc_ratio": {a: (1.0 if a == name else None) for a in anchors},
                     "dec_ratio": {a: (1.0 if a == name else None) for a in anchors},
                     "crosscheck": {"verdict": "anchor", "report": None}})
    return rows


def _curves(entries: list[Entry]) -> list[Curve]:
    """The anchors' curves (from the first bundle's sheet) and every entry's test curve."""
    curves, seen = [], set()
    for entry in entries:
        points = entry.sheet[entry.sheet.section == "point"]
        for (curve, role), rows in points.groupby(["curve", "role"], sort=False):
            label = curve if role == "anchor" else f"{curve} ({entry.name})"
            if label in seen:
                continue
            seen.add(label)
            curves.append(Curve(label, rows[["task", "bpfp", "metric", "mse"]].reset_index(drop=True), entry.name))
    return curves


def build_site(paths: list[Path], out: Path) -> SiteFiles:
    from harness.figures import curve_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = SiteFiles(out / "index.html", out / "leaderboard.json")
    work = Path(tempfile.mkdtemp(prefix=".leaderboard-", dir=out))
    try:
        entries, seen = [], set()
        for path in find_bundles(paths):
            try:
                entry = load_entry(path, work)
            except HarnessError as exc:
                files.excluded.append(str(exc))
                continue
            if entry.bundle_sha256 not in seen:  # the same bundle given twice is listed once
                seen.add(entry.bundle_sha256)
                entries.append(entry)
        groups = []
        by_ctc: dict[str, list[Entry]] = {}
        for entry in entries:
            by_ctc.setdefault(str(entry.manifest["ctc"].get("sha256")), []).append(entry)
        for sha, members in sorted(by_ctc.items(), key=lambda kv: str(kv[1][0].manifest["ctc"].get("name"))):
            ctc = members[0].manifest["ctc"]
            shipped = shipped_ctc(sha)
            anchors = list(shipped.anchors) if shipped else []  # the checker's CTC names them, never a bundle
            tasks = sorted({str(t) for e in members for t in e.sheet[e.sheet.section == "point"].task})
            figures = []
            curves = _curves(members)
            for task in tasks:
                if any(task in c.tasks and not c.task(task).metric.isna().all() for c in curves):
                    names = [str(n) for e in members for n in e.sheet[e.sheet.task == task].metric_name.dropna()]
                    label = names[0] if names else "task metric"
                    png = curve_plot(task, curves, "metric", label, out / "figures" / f"{sha[:12]}-{task}-ra")[0]
                    figures.append({"task": task, "src": png.relative_to(out).as_posix()})
                    files.figures.append(png)
            rows = _anchor_rows(anchors, tasks, shipped) + [_entry_row(e, anchors, tasks) for e in members]
            for entry in members:
                status = _crosscheck_status(entry)
                if status["report"] and entry.crosscheck_html:
                    atomic_write_bytes(out / status["report"], read_regular(entry.crosscheck_html, limit=64 << 20))
            groups.append({"ctc": {"name": ctc.get("name"), "version": ctc.get("version"), "sha256": sha},
                           "anchors": anchors, "tasks": tasks, "rows": rows, "figures": figures})
        record = {"schema": LEADERBOARD_SCHEMA, "groups": groups, "excluded": files.excluded}
        write_json(files.json, {**record, "groups": [{k: v for k, v in g.items() if k != "figures"} | {
            "figures": [f["src"] for f in g["figures"]]} for g in groups]})
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("harness_reports"))),
                                 undefined=jinja2.StrictUndefined, autoescape=True)
        write_text(files.html, env.get_template("leaderboard.html.j2").render(**record, fmt=_fmt))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return files


def _fmt(value: float | None, pattern: str = "%+.2f") -> str:
    return "n/a" if value is None else pattern % value
