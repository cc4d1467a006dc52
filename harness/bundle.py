"""`harness pack RUN_DIR`: a deterministic, self-describing submission bundle.

A bundle is a directory that is itself a run directory (so every reader of runs works on it)
plus a manifest, and the same tree as one tar archive:

    BUNDLE/manifest.json          what was coded, how, by whom (schema BUNDLE_SCHEMA)
    BUNDLE/SHA256SUMS             sha256 of every other file (manifest.json included)
    BUNDLE/run.json               the run's description, machine paths removed
    BUNDLE/results.csv            rebuilt from the records
    BUNDLE/metrics.csv            task metrics, when the run was evaluated
    BUNDLE/records/...            one JSON record per job (reconstruction hashes)
    BUNDLE/bitstreams/...         exactly the counted bytes
    BUNDLE/bd-rates.json          BD-rate / BD-metric against every anchor of the CTC
    BUNDLE/sheet.csv, sheet.xlsx  the standardized result sheet (harness.sheet), same numbers
    BUNDLE.tar                    the tree above under `bundle/`, fixed order, times and owners

Packing the same run twice gives identical bytes: nothing depends on the packing time, the
packing machine's paths or the file system's order. The sha256 of SHA256SUMS identifies a
bundle: that file pins every other one, manifest.json included. Whoever publishes a bundle
publishes that sha256 (`harness pack` prints it; crosscheck reports and the leaderboard use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import hashlib
import io
import json
import math
import os
from pathlib import Path
import re
import shutil
import tarfile
import tempfile
import tomllib
from typing import Any

from harness import __version__
from harness.ctc import CTC, ctc_of_run
from harness.errors import HarnessError, RunError
from harness.npyio import atomic_write_json, atomic_write_text, read_csv_checked
from harness.run_meta import RunMeta, read_run_meta
from harness.results import (METRICS_COLUMNS, METRICS_NUMBERS, ResultRecord, collect_records, read_bitstream,
                             records_frame)
from harness.comparison import ComparisonSet
from harness.formats.manifest import SCHEMA as BUNDLE_SCHEMA, SUBMITTER_FIELDS  # noqa: F401 (re-exported)
from harness.formats.manifest import (CodecRef, Contents, CtcRef, DatasetRef, Manifest, ModelFile, PluginRef,
                                      manifest_json)
from harness.safe_io import read_regular, sha256_regular, walk_tree

MAX_FILE_BYTES = 4 << 30  # one file of a bundle (the largest bitstreams of the paper CTC are MBs)
ARCHIVE_ROOT = "bundle"  # the tar's top folder: fixed, so the bytes do not depend on --out
ARCHIVE_MTIME = 946684800  # 2000-01-01T00:00:00Z for every member: packing time must not show
MANIFEST, SUMS, BD_FILE = "manifest.json", "SHA256SUMS", "bd-rates.json"
META_FIELDS = SUBMITTER_FIELDS
MAX_META_BYTES = 64 << 10
# A path of the packing machine: a "/" that starts a token (not N/A, 1/2 or the // of a URL).
_ABSOLUTE = re.compile(r"(?<![\w.~:/\-])/[^\s'\",;:()\[\]]+")


@dataclass(frozen=True)
class PackResult:
    directory: Path
    archive: Path
    bundle_sha256: str  # of SHA256SUMS, which pins every other file
    files: int
    bytes: int


def scrub(value: Any) -> Any:
    """`value` with every absolute path replaced by '<path>' (a bundle travels; the packing
    machine's folders are nobody's business and would make bundles of one run differ)."""
    if isinstance(value, str):
        return _ABSOLUTE.sub("<path>", value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    return value


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_meta(path: Path | None) -> dict[str, str]:
    """Submitter fields from a small TOML or JSON file (--meta); unknown keys are refused so a
    typo ('licens') is not silently lost."""
    if path is None:
        return {}
    raw = read_regular(Path(path), limit=MAX_META_BYTES)
    try:
        data = json.loads(raw) if Path(path).suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if Path(path).suffix == ".json" else "TOML"
        raise HarnessError(f"{path}: not readable {kind} ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("submission"), dict):
        data = data["submission"]  # a [submission] table is allowed too
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a table of submitter fields ({', '.join(META_FIELDS)})")
    if "license" in data and "licence" not in data:
        data["licence"] = data.pop("license")
    unknown = sorted(set(data) - set(META_FIELDS))
    if unknown:
        raise HarnessError(f"{path}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(META_FIELDS)}")
    for key, value in data.items():
        if not isinstance(value, str) or len(value) > 2000:
            raise HarnessError(f"{path}: field '{key}' must be text of at most 2000 characters")
    return dict(sorted(data.items()))


def model_file_entries(run: RunMeta, records: list[ResultRecord]) -> list[dict[str, Any]]:
    """Every file the installed codec's decoder needs, per (task, rate point), with size and sha256;
    checked against the fingerprints the run recorded (a retrained model since the run is refused)."""
    from harness.feature_hashes import file_sha256
    from harness.registry import default_registry

    spec = default_registry().codec(run.codec).spec
    if spec.model_files is None:
        return []
    options, recorded = run.options, run.model_fingerprints
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for task, point in sorted({(r.task, r.rate_point) for r in records if r.status == "ok"}):
        digest = hashlib.sha256()
        for path in spec.model_files(options, task, point):
            path = Path(path)
            sha = file_sha256(path)
            digest.update(path.name.encode() + b"\0" + sha.encode())
            entry = entries.setdefault((path.name, sha), {"name": path.name, "size": path.stat().st_size,
                                                          "sha256": sha, "used_by": []})
            entry["used_by"].append(f"{task}@{point:g}")
        want = recorded.get(f"{task}@{point:g}")
        if want and want != digest.hexdigest():
            raise RunError(f"the {run.codec} model files for {task}@{point:g} differ from those the run "
                           "was coded with (run.json run_key.model_fingerprints); pack with the run's models")
    return sorted(entries.values(), key=lambda e: (e["name"], e["sha256"]))


def plugin_entry(run: RunMeta) -> dict[str, Any]:
    """The codec plugin as installed here (it must be the version the run was coded with)."""
    from harness.registry import default_registry

    name = run.codec
    registered = default_registry().codec(name)
    if registered.spec.version != run.codec_version:
        raise RunError(f"the run was coded with {name} {run.codec_version}, but {name} "
                       f"{registered.spec.version} is installed; pack where the run was coded")
    source = registered.source
    return {"entry_point": source.plugin, "distribution": source.distribution,
            "distribution_version": source.version, "module": source.target}


def bd_rates(result: ComparisonSet, ctc: CTC) -> dict[str, Any]:
    """bd-rates.json of one comparison: BD-rate and BD-metric against every anchor, on each of its axes,
    in `harness compare --format json`'s terms (withheld BD-rates as null with the reason, bootstrap
    intervals) plus the point counts and ranges of both curves; no machine paths (anchor files by name)."""
    from harness.comparison import anchor_record
    from harness.curves import axis_values

    ons, method, policy = result.ons, result.method, result.policy
    comparisons = []
    for on in ons:
        for against in result.anchors:
            record = anchor_record(result, against, on)
            record["anchor_file"] = against.anchor_file
            record["test_file"] = None
            record["test_source"] = "this bundle"
            for task, entry in record["tasks"].items():
                a, t = against.curve.task(task), result.test_curve.task(task)
                entry["anchor_points"], entry["test_points"] = int(len(a)), int(len(t))
                # the ranges each curve spans, and where they overlap on the integration axis
                (_, ya, _), (_, yt, _) = axis_values(a, on), axis_values(t, on)
                entry["anchor_range"] = {"bpfp": _span(a.bpfp), on: _span(ya)}
                entry["test_range"] = {"bpfp": _span(t.bpfp), on: _span(yt)}
                (a_low, a_high), (t_low, t_high) = _span(ya), _span(yt)
                low, high = max(a_low, t_low), min(a_high, t_high)
                entry["common_range"] = {on: [low, high] if low <= high else None}
            comparisons.append(record)
    return {"method": method, "policy": policy, "ctc_sha256": ctc.sha256, "min_overlap": result.min_overlap,
            "bootstrap": {"count": result.bootstrap, "seed": result.seed, "level": result.level},
            "comparisons": scrub(comparisons)}


def _span(values: Any) -> list[float]:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return [min(finite), max(finite)] if finite else [math.nan, math.nan]


def _stage_run(run_dir: Path, stage: Path, records: list[ResultRecord]) -> dict[str, Any]:
    """Copy what a run directory needs into `stage`: bitstreams (read through their recorded size
    and sha256), records and results rebuilt from the checked records, metrics, run.json scrubbed."""
    totals = {"bitstreams": 0, "bitstream_bytes": 0}
    for record in records:
        label = f"{record.rate_parameter}{record.rate_point:g}"
        clean = ResultRecord(**{**record.to_dict(), "error": scrub(record.error)})
        (stage / "records" / record.task / label).mkdir(parents=True, exist_ok=True)
        (stage / "records" / record.task / label / f"{record.sample}.json").write_bytes(_json_bytes(clean.to_dict()))
        if record.status == "ok":
            data = read_bitstream(run_dir, record)
            target = stage / record.bitstream_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            totals["bitstreams"] += 1
            totals["bitstream_bytes"] += len(data)
    frame = records_frame(records).assign(error=lambda f: f.error.map(scrub))
    (stage / "results.csv").write_text(frame.to_csv(index=False), encoding="utf-8")  # floats round-trip
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        read_csv_checked(metrics, "metrics table", METRICS_COLUMNS, METRICS_NUMBERS)  # a table, not anything
        (stage / "metrics.csv").write_bytes(read_regular(metrics, limit=64 << 20))
    return totals


def bundle_run_json(meta: dict) -> dict:
    """run.json as it travels: machine paths removed; roots emptied (the checker has its own); the
    codec options once, in run_key.codec_options (schema 2)."""
    from harness import schemas

    clean = scrub(meta)
    clean["ctc"] = {**clean["ctc"], "root": ""}
    clean["dataset"] = {**clean["dataset"], "root": ""}
    clean["codec"] = {k: v for k, v in clean["codec"].items() if k != "options"}
    clean["schema"] = schemas.RUN_JSON
    return clean


def build_manifest(run: RunMeta, ctc: CTC, records: list[ResultRecord], totals: dict[str, Any],
                   submitter: dict[str, str], has_metrics: bool) -> Manifest:
    meta = run.raw
    codec, dataset, key = meta["codec"], meta["dataset"], meta.get("run_key", {})
    plugin = plugin_entry(run)
    return Manifest(
        path=Path(MANIFEST), harness_version=__version__, run_harness_version=meta.get("harness_version"),
        ctc=CtcRef(ctc.name, ctc.version, ctc.sha256),
        dataset=DatasetRef(run.dataset, run.synthetic, dict(dataset.get("samples", {})),
                           dict(dataset.get("content_sha256", {})), dict(key.get("sample_lists", {}))),
        codec=CodecRef(run.codec, run.codec_version, run.family, run.input_kind, codec.get("rate_parameter", ""),
                       scrub(run.options), run.quant_rule,
                       PluginRef(plugin["distribution"], plugin["distribution_version"], plugin["entry_point"],
                                 plugin["module"]), scrub(codec.get("tools", {}))),
        model_files=tuple(ModelFile(m["name"], m["size"], m["sha256"], tuple(m["used_by"]))
                          for m in model_file_entries(run, records)),
        submitter=submitter,
        contents=Contents(len(records), totals["bitstreams"], totals["bitstream_bytes"], has_metrics,
                          tuple(sorted({f"{r.task}/{r.rate_parameter}{r.rate_point:g}" for r in records}))),
        environment=scrub({"machine": meta.get("machine", {}),
                           **{k: meta[k] for k in ("libraries", "device", "threads") if k in meta}}),
    )


def sums_text(root: Path) -> str:
    """SHA256SUMS of every file under `root` but SHA256SUMS itself, sorted by path (sha256sum -c format)."""
    return "".join(f"{sha256_regular(root / rel, MAX_FILE_BYTES)}  {rel}\n" for rel in walk_tree(root).files
                   if rel != SUMS)


def write_archive(root: Path, archive: Path) -> None:
    """`root` as a tar with fixed order, times, owners and modes (identical bytes for identical
    trees), written through a temp file and renamed (readers never see half an archive)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
            paths = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
            tar.addfile(_tarinfo(ARCHIVE_ROOT, None))
            for path in paths:
                name = f"{ARCHIVE_ROOT}/{path.relative_to(root).as_posix()}"
                if path.is_dir():
                    tar.addfile(_tarinfo(name, None))
                else:
                    data = path.read_bytes()
                    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tarinfo(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = ARCHIVE_MTIME, 0, 0, "", ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def pack(run_dir: Path, out: Path | None = None, meta_file: Path | None = None, ctc_dir: Path | None = None,
         ) -> PackResult:
    """Pack a finished run into BUNDLE (a directory) and BUNDLE.tar."""
    run_dir = Path(run_dir)
    run = read_run_meta(run_dir)
    meta = run.raw
    ctc = ctc_of_run(meta, run_dir, ctc_dir)
    submitter = read_meta(meta_file)
    records = collect_records(run_dir)
    failed = [r for r in records if r.status != "ok"]
    if not records:
        raise RunError(f"{run_dir}: no finished jobs to pack")
    if failed:
        first = failed[0]
        raise RunError(f"{run_dir}: {len(failed)} job(s) failed (first {first.task}/{first.rate_parameter}"
                       f"{first.rate_point:g}/{first.sample}); finish the run before packing it")
    out = Path(out) if out else Path(f"{run_dir.name}.bundle")
    if out.exists() and not (out / MANIFEST).is_file():
        raise HarnessError(f"{out}: exists and is not a bundle; give another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        totals = _stage_run(run_dir, stage, records)
        (stage / "run.json").write_bytes(_json_bytes(bundle_run_json(meta)))
        has_metrics = (stage / "metrics.csv").exists()
        from harness.comparison import compare_run
        from harness.sheet import write_sheet

        comparison = compare_run(stage, ctc, run.codec)  # once: bd-rates.json and the sheet show the same
        (stage / BD_FILE).write_bytes(_json_bytes(_strict(bd_rates(comparison, ctc))))
        write_sheet(stage, ctc, run.codec, result=comparison)
        manifest = build_manifest(run, ctc, records, totals, submitter, has_metrics)
        (stage / MANIFEST).write_bytes(_json_bytes(_strict(manifest_json(manifest))))
        (stage / SUMS).write_text(sums_text(stage), encoding="utf-8")
        _tidy_modes(stage)
        write_archive(stage, out.with_name(out.name + ".tar"))
        old = None
        if out.exists():  # replace a previous bundle: the new tree goes in by rename
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        stage.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    archive = out.with_name(out.name + ".tar")
    bundle_sha = _sha256((out / SUMS).read_bytes())
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return PackResult(out, archive, bundle_sha, files, archive.stat().st_size)


def _tidy_modes(root: Path) -> None:
    """Readable by everyone (mkdtemp makes 0700): a bundle is meant to be handed on."""
    os.chmod(root, 0o755)
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _strict(obj: Any) -> Any:
    """NaN and infinities as null: the manifest and BD table are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


# Caps on what an archive may unpack to: a bundle of the paper CTC is a few GB at most; a mini
# bundle a few MB. Counted from the headers before anything is written.
MAX_ARCHIVE_BYTES = 8 << 30
MAX_ARCHIVE_MEMBERS = 200_000
MAX_ARCHIVE_DEPTH = 8  # bundle/bitstreams/<task>/<rate>/<sample>.bin is 5


def extract_archive(archive: Path, into: Path, limit: int = MAX_ARCHIVE_BYTES) -> Path:
    """Unpack a bundle archive made by `pack` (untrusted), with the semantics of tarfile's `data`
    filter and more: only regular files and folders under `bundle/`; no links, devices, FIFOs,
    sparse or absolute members, no '..', no duplicate names, names in UTF-8 of plain components;
    at most `limit` bytes, MAX_ARCHIVE_MEMBERS members and MAX_ARCHIVE_DEPTH levels. Everything is
    checked from the headers before the first byte is written."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = _checked_members(archive, tar, limit)
            for member in members:
                target = into / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "xb") as fh:  # x: never overwrite, never follow a link
                    shutil.copyfileobj(source, fh)
    except (tarfile.TarError, EOFError) as exc:
        raise RunError(f"{archive}: not a readable bundle archive ({exc})") from None
    except OSError as exc:
        raise RunError(f"{archive}: cannot be unpacked here ({exc.strerror or exc})") from None
    return into / ARCHIVE_ROOT


def _checked_members(archive: Path, tar: tarfile.TarFile, limit: int) -> list[tarfile.TarInfo]:
    members, names, total = [], set(), 0
    for member in tar:
        if len(members) >= MAX_ARCHIVE_MEMBERS:
            raise RunError(f"{archive}: more than {MAX_ARCHIVE_MEMBERS} members; not a bundle made by harness pack")
        name = member.name
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:80]
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise RunError(f"{archive}: member {shown!r} has a name that is not UTF-8") from None
        parts = name.rstrip("/").split("/")
        if (name.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] != ARCHIVE_ROOT
                or any(c < " " or c == "\\" for c in name)):
            raise RunError(f"{archive}: member {shown!r} is not a plain path under {ARCHIVE_ROOT}/")
        if len(parts) > MAX_ARCHIVE_DEPTH:
            raise RunError(f"{archive}: member {shown!r} is nested more than {MAX_ARCHIVE_DEPTH} levels deep")
        if not (member.isreg() or member.isdir()) or member.issparse():
            raise RunError(f"{archive}: member {shown!r} is not a plain file or folder (links, devices, FIFOs "
                           "and sparse files are refused)")
        key = "/".join(parts)
        if key in names:
            raise RunError(f"{archive}: member {shown!r} appears twice")
        names.add(key)
        total += member.size
        if total > limit:
            raise RunError(f"{archive}: unpacks to more than {limit} bytes")
        members.append(member)
    return members


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, _strict(obj))


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)
