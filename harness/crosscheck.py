"""`harness crosscheck BUNDLE`: a second lab checks a submission bundle from its bytes alone.

Every file of the bundle is untrusted input. The checks, each with its own verdict:

    integrity   SHA256SUMS covers every file, every hash matches (names the file)
    manifest    schema, fields, and agreement with run.json and the records (names the field)
    records     every record in its place, results.csv row for row the records, every
                bitstream of the recorded size and sha256, no stray bitstream
    plugin      the installed codec plugin is the bundle's (version, distribution)
    models      the installed codec's model files are the bundle's (name, size, sha256)
    dataset     the checker's dataset is the bundle's (sample lists, feature hashes)
    decode      every bitstream decoded in a fresh process gives the recorded reconstruction
    bpfp        BPFP recomputed from the bytes and the dataset's point counts
    metrics     task metrics re-scored from decoded features (all samples, or a seeded subset)
    bd-rates    BD-rates recomputed against the CTC's anchors
    sheet       the result sheet (sheet.csv, sheet.xlsx) recomputed, byte for byte

`pass`, `fail`, `warn` (not a failure, but read it) or `skip` (could not be checked here, with
the reason). Any `fail` makes the command exit non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
import hashlib
from importlib import resources
import json
import math
import multiprocessing
from pathlib import Path
import random
import shutil
import tempfile
from typing import Any

import jinja2

from harness.bundle import (BD_FILE, BUNDLE_SCHEMA, MANIFEST, SUMS, bd_rates, extract_archive, load_json_file,
                            write_json, write_text)
from harness.ctc import CTC, ctc_of_run
from harness.errors import HarnessError, RunError
from harness.jobs import input_dtype
from harness.npyio import read_csv_checked
from harness.provenance import load_run_meta
from harness.run_meta import RunMeta
from harness.results import (COLUMNS, METRICS_COLUMNS, METRICS_NUMBERS, ResultRecord, collect_records,
                             read_bitstream, table_records)
from harness.safe_io import inside, is_sha256, read_regular
from harness.verify import VerifyJob, decode_and_hash

# Re-scoring runs the task heads on another machine: bit-identical decoded features (checked by
# hash) can still give slightly different floats there (BLAS threading, onnxruntime kernels), so
# metrics agree within a relative tolerance per task (absolute floor for values near zero). FID
# (tti) sums over a covariance and drifts most.
METRIC_TOLERANCE: dict[str, tuple[float, float]] = {"default": (1e-4, 1e-6), "tti": (1e-2, 1e-3)}
BPFP_TOLERANCE = 1e-9  # BPFP is arithmetic on integers: only float formatting may differ
BD_TOLERANCE = 1e-6  # percent: the same numbers through the same code
VERDICTS = ("pass", "warn", "skip", "fail")


@dataclass
class Check:
    name: str
    verdict: str = "pass"
    summary: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.verdict = "fail"
        self.problems.append(problem)


@dataclass
class CrosscheckResult:
    bundle: str
    bundle_sha256: str  # of SHA256SUMS: which bundle was checked
    checks: list[Check]
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        return all(c.verdict != "fail" for c in self.checks)

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "fail"
        return "pass" if all(c.verdict == "pass" for c in self.checks) else "pass with notes"


@dataclass(frozen=True)
class CrosscheckRequest:
    bundle: Path
    out: Path | None = None
    dataset: str | None = None
    data_root: Path | None = None
    samples: str = "all"  # "all" or a number of samples per task (seeded)
    seed: int = 0
    jobs: int = 2
    ctc_dir: Path | None = None
    heads: str = "auto"
    weights: Path | None = None
    options: tuple[tuple[str, str], ...] = ()  # -o KEY=VALUE: the checker's own values (e.g. models=DIR)
    reencode: int = 0  # re-encode N seeded samples per task at every rate point (0: no encoder check)


SCRUBBED = "<path>"


def codec_options(manifest: dict, request: CrosscheckRequest) -> dict[str, str]:
    """The bundle's codec options with the checker's -o values on top: an option that held a path
    of the packing machine (scrubbed to '<path>', e.g. klt's models=DIR) must be given here."""
    options = manifest.get("codec", {}).get("options", {})
    return {**(options if isinstance(options, dict) else {}), **dict(request.options)}


def _guarded(check: Check, step: Callable[[Check], None]) -> Check:
    """A check that meets a malformed file fails with that file's message, and the others go on."""
    try:
        step(check)
    except HarnessError as exc:
        check.fail(str(exc))
    if check.verdict == "fail" and not check.summary:
        check.summary = check.problems[0] if check.problems else "failed"
    return check


# ---------------------------------------------------------------- integrity


def check_integrity(root: Path, check: Check) -> None:
    text = read_regular(root / SUMS, limit=64 << 20).decode("utf-8", errors="replace")
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not is_sha256(digest):
            raise RunError(f"{root / SUMS}:{number}: not '<sha256>  <path>'")
        inside(root, name, f"{root / SUMS}:{number}", "path")
        listed[name] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()} - {SUMS}
    for name in sorted(present - set(listed)):
        check.fail(f"{root / name}: not listed in {SUMS}")
    for name in sorted(set(listed) - present):
        check.fail(f"{root / name}: listed in {SUMS} but missing")
    for name in sorted(set(listed) & present):
        try:
            data = read_regular(root / name)
        except HarnessError as exc:
            check.fail(str(exc))
            continue
        if hashlib.sha256(data).hexdigest() != listed[name]:
            check.fail(f"{root / name}: sha256 differs from {SUMS}")
    if MANIFEST not in listed:
        check.fail(f"{root / SUMS}: does not list {MANIFEST}")
    check.summary = (f"{len(listed)} files match {SUMS}" if check.verdict == "pass"
                     else f"{len(check.problems)} file(s) do not match {SUMS}")


# ---------------------------------------------------------------- manifest


def _field(data: dict, dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_manifest(root: Path, manifest: dict, meta: dict, records: list[ResultRecord], check: Check) -> None:
    where = root / MANIFEST
    if manifest.get("schema") != BUNDLE_SCHEMA:
        check.fail(f"{where}: field 'schema' is {str(manifest.get('schema'))[:40]!r}; "
                   f"this harness reads {BUNDLE_SCHEMA}")
        return
    for name in ("ctc.sha256", "ctc.name", "dataset.name", "codec.name", "codec.version", "codec.plugin.distribution"):
        if not isinstance(_field(manifest, name), str):
            check.fail(f"{where}: field '{name}' missing or not text")
    pairs = [("ctc.sha256", "ctc.sha256"), ("ctc.name", "ctc.name"), ("ctc.version", "ctc.version"),
             ("dataset.name", "dataset.name"), ("dataset.content_sha256", "dataset.content_sha256"),
             ("dataset.sample_lists", "run_key.sample_lists"), ("codec.name", "codec.name"),
             ("codec.version", "codec.version"), ("codec.options", "codec.options"),
             ("codec.quant_rule", "run_key.quant_rule")]
    for ours, theirs in pairs:
        if _field(manifest, ours) != _field(meta, theirs):
            check.fail(f"{where}: field '{ours}' is {str(_field(manifest, ours))[:80]!r}, but run.json's "
                       f"'{theirs}' is {str(_field(meta, theirs))[:80]!r}")
    for record in records:
        if record.codec != _field(manifest, "codec.name") or record.codec_version != _field(manifest, "codec.version"):
            label = f"{record.task}/{record.rate_parameter}{record.rate_point:g}/{record.sample}"
            check.fail(f"{root}/records/{label}.json: "
                       f"fields 'codec'/'codec_version' are {record.codec} {record.codec_version}, the manifest's "
                       f"{_field(manifest, 'codec.name')} {_field(manifest, 'codec.version')}")
            break
    check.summary = "schema, CTC, dataset and codec agree with run.json and the records"


# ---------------------------------------------------------------- records and bitstreams


def check_records(root: Path, records: list[ResultRecord], check: Check) -> None:
    table = {(r.task, r.rate_parameter, r.rate_point, r.sample): (n, r)
             for n, r in enumerate(table_records(root / "results.csv"), 2)}
    for record in records:
        key = (record.task, record.rate_parameter, record.rate_point, record.sample)
        if key not in table:
            check.fail(f"{root / 'results.csv'}: no row for {record.task}/{record.rate_parameter}"
                       f"{record.rate_point:g}/{record.sample}")
            continue
        number, row = table.pop(key)
        for name in COLUMNS:
            a, b = getattr(record, name), getattr(row, name)
            if a != b and not (isinstance(a, float) and math.isnan(a) and math.isnan(b)) \
                    and not (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-9)):
                check.fail(f"{root / 'results.csv'}:{number}: field '{name}' is {b!r}, its record says {a!r}")
    for number, row in table.values():
        check.fail(f"{root / 'results.csv'}:{number}: {row.task}/{row.rate_parameter}{row.rate_point:g}/{row.sample} "
                   "has no record")
    used = set()
    for record in records:
        if record.status != "ok":
            check.fail(f"{root}/records/{record.task}: job {record.sample} is a failed job; "
                       "a bundle holds finished runs")
            continue
        try:
            read_bitstream(root, record)
        except HarnessError as exc:
            check.fail(str(exc))
        used.add(record.bitstream_path)
    for path in sorted((root / "bitstreams").rglob("*")):
        if path.is_file() and path.relative_to(root).as_posix() not in used:
            check.fail(f"{path}: a bitstream no record counts")
    check.summary = f"{len(records)} records, results.csv and bitstreams agree"


# ---------------------------------------------------------------- plugin and model files


def check_plugin(manifest: dict, options: dict[str, str], check: Check) -> None:
    from harness.registry import default_registry

    codec = manifest["codec"]
    for key, value in sorted(options.items()):
        if SCRUBBED in str(value):
            check.fail(f"{MANIFEST}: codec option '{key}' was a path on the packing machine; give yours with "
                       f"-o {key}=VALUE")
    try:
        registered = default_registry().codec(codec["name"])
    except HarnessError as exc:
        check.fail(f"codec plugin not installed here: {exc}")
        return
    spec, source, plugin = registered.spec, registered.source, codec.get("plugin", {})
    if spec.version != codec.get("version"):
        check.fail(f"{MANIFEST}: field 'codec.version' is {codec.get('version')!r}; installed {codec['name']} is "
                   f"{spec.version!r} (from {source.describe()})")
    if source.distribution != plugin.get("distribution"):
        check.fail(f"{MANIFEST}: field 'codec.plugin.distribution' is {plugin.get('distribution')!r}; installed "
                   f"{codec['name']} comes from {source.distribution!r}")
    elif source.version != plugin.get("distribution_version"):
        check.verdict = "warn" if check.verdict == "pass" else check.verdict
        check.problems.append(f"{MANIFEST}: field 'codec.plugin.distribution_version' is "
                              f"{plugin.get('distribution_version')!r}; installed {source.distribution} is "
                              f"{source.version!r} "
                              "(same codec version; decoding decides)")
    missing = spec.missing()
    if missing:
        check.fail(f"codec '{codec['name']}' cannot run here: {missing}")
    if check.verdict != "fail":
        try:
            spec.open(dict(options))  # options it refuses, or model files it cannot find: said here
        except Exception as exc:  # a plugin may raise anything
            check.fail(f"codec '{codec['name']}' cannot be built with options {options}: {exc}")
    check.summary = f"installed {codec['name']} {spec.version} from {source.describe()}"


def check_models(manifest: dict, options: dict[str, str], records: list[ResultRecord], check: Check) -> None:
    from harness.feature_hashes import file_sha256
    from harness.registry import default_registry

    wanted = {(m.get("name"), m.get("sha256")): m for m in manifest.get("model_files", [])}
    spec = default_registry().codec(manifest["codec"]["name"]).spec
    if spec.model_files is None:
        if wanted:
            check.fail(f"{MANIFEST}: lists {len(wanted)} model file(s), but the installed codec declares none")
        check.summary = "the codec uses no model files" if not wanted else check.summary
        return
    found: dict[tuple[str, str], int] = {}
    for task, point in sorted({(r.task, r.rate_point) for r in records}):
        for path in spec.model_files(options, task, point):
            path = Path(path)
            if not path.is_file():
                check.fail(f"model file for {task}@{point:g} missing here: {path}")
                continue
            found[(path.name, file_sha256(path))] = path.stat().st_size
    for key in sorted(set(wanted) - set(found)):
        check.fail(f"{MANIFEST}: model file {key[0]} (sha256 {key[1][:12]}) is not the installed one")
    for key in sorted(set(found) - set(wanted)):
        check.fail(f"installed model file {key[0]} (sha256 {key[1][:12]}) is not in {MANIFEST}")
    for key in sorted(set(found) & set(wanted)):
        if found[key] != wanted[key].get("size"):
            check.fail(f"{MANIFEST}: model file {key[0]}: field 'size' is {wanted[key].get('size')}, "
                       f"installed {found[key]}")
    check.summary = f"{len(wanted)} model file(s) match"


# ---------------------------------------------------------------- dataset, decode, bpfp


def resolve_dataset_for(manifest: dict, ctc: CTC, request: CrosscheckRequest):
    """The checker's copy of the dataset: --dataset / --data-root, else the built-in dataset whose
    label the bundle names (e.g. demo-v3, mini-v2-...). None when there is none."""
    from harness.registry import default_registry
    from harness.sources import resolve_dataset

    registry = default_registry()
    if request.dataset or request.data_root:
        return resolve_dataset(request.dataset, request.data_root, ctc, registry, progress=False)
    label = manifest["dataset"]["name"]
    for name in sorted(registry.datasets):
        if label.startswith(f"{name}-v"):
            return resolve_dataset(name, None, ctc, registry, progress=False)
    return None


def check_dataset(manifest: dict, records: list[ResultRecord], source, check: Check) -> dict[tuple[str, str], int]:
    """Points per (task, sample) from the checker's feature files; their hashes against the records."""
    from harness.feature_hashes import content_fingerprint, file_sha256
    from harness.npyio import read_npy_header

    points: dict[tuple[str, str], int] = {}
    if source.label != manifest["dataset"]["name"]:
        check.verdict = "warn"
        check.problems.append(f"the dataset here is '{source.label}', the bundle's '{manifest['dataset']['name']}' "
                              "(feature hashes decide)")
    digests: dict[str, dict[str, str]] = {}
    for task, wanted in sorted(manifest["dataset"].get("sample_lists", {}).items()):
        have = source.dataset.fingerprint([task])
        if have != wanted:
            check.fail(f"{MANIFEST}: field 'dataset.sample_lists.{task}' is {str(wanted)[:12]}, the sample list "
                       f"here {have[:12]} ({source.dataset.sample_list_path(task)})")
    for record in records:
        key = (record.task, record.sample)
        if key in points:
            continue
        path = source.dataset.feature_path(record.task, record.sample)
        try:
            header = read_npy_header(path)
        except HarnessError as exc:
            check.fail(str(exc))
            continue
        points[key] = math.prod(header.shape)
        digest = file_sha256(path)
        digests.setdefault(record.task, {})[record.sample] = digest
        if record.feature_sha256 and digest != record.feature_sha256:
            check.fail(f"{path}: sha256 differs from field 'feature_sha256' of the bundle's "
                       f"{record.task}/{record.sample} records")
    for task, wanted in sorted(manifest["dataset"].get("content_sha256", {}).items()):
        if task in digests and content_fingerprint(digests[task]) != wanted:
            check.fail(f"{MANIFEST}: field 'dataset.content_sha256.{task}' differs from the features here")
    check.summary = f"{len(points)} features of '{source.label}' match the bundle's hashes"
    return points


def check_decode(root: Path, run: RunMeta, ctc: CTC, records: list[ResultRecord], jobs: int,
                 codec_options: dict[str, str], check: Check) -> None:
    from harness.decode_pool import DecodeJob, decode_jobs

    options = tuple(sorted(codec_options.items()))
    kind = run.input_kind
    work = [DecodeJob(str(root), r.codec, options, (), r.bitstream_path, r.bytes, r.bitstream_sha256, r.recon_sha256,
                      r.job_label, kind,
                      input_dtype(kind, ctc.task(r.task).dtype)) for r in records if r.status == "ok"]
    # decode-only worker processes (never one that encoded), each decode from the bytes alone,
    # under a memory cap and a timeout: a hostile bitstream fails its job, not the check
    results = decode_jobs(work, jobs)
    for result in results:
        if not result.ok:
            check.fail(f"{root}/records/{result.label}.json: {result.problem}")
    good = sum(r.ok for r in results)
    check.summary = (f"{good} of {len(results)} bitstreams decode to their recorded reconstruction "
                     f"(decode-only processes)")


def check_bpfp(root: Path, records: list[ResultRecord], points: dict[tuple[str, str], int] | None,
               metrics: Any, check: Check) -> None:
    per_point: dict[tuple[str, float], list[float]] = {}
    for record in records:
        label = f"{root}/{record.record_path}"
        size = (root / record.bitstream_path).stat().st_size
        count = points.get((record.task, record.sample), record.points) if points else record.points
        if points and count != record.points:
            check.fail(f"{label}: field 'points' is {record.points}, the dataset's feature has {count}")
        if size != record.bytes:
            check.fail(f"{label}: field 'bytes' is {record.bytes}, the bitstream has {size}")
        bpfp = 8 * size / count if count else math.nan
        if not math.isclose(bpfp, record.bpfp, rel_tol=BPFP_TOLERANCE):
            check.fail(f"{label}: field 'bpfp' is {record.bpfp:.10g}, 8*bytes/points is {bpfp:.10g}")
        per_point.setdefault((record.task, record.rate_point), []).append(bpfp)
    if metrics is not None:
        rows = metrics[metrics.rate_point.astype(str) != "orig"]
        for number, row in zip(rows.index, rows.itertuples()):
            mean = per_point.get((row.task, float(row.rate_point)))
            if mean is None:
                check.fail(f"{root / 'metrics.csv'}:{number + 2}: {row.task} rate point {row.rate_point} "
                           "has no records")
            elif not math.isclose(float(row.bpfp), sum(mean) / len(mean), rel_tol=1e-8):
                check.fail(f"{root / 'metrics.csv'}:{number + 2}: field 'bpfp' is {row.bpfp}, the bytes give "
                           f"{sum(mean) / len(mean):.10g}")
    source = "the dataset's point counts" if points else "the records' point counts (no dataset here)"
    check.summary = f"BPFP of {len(records)} bitstreams and {len(per_point)} rate points from the bytes and {source}"


# ---------------------------------------------------------------- metrics


def subset(records: list[ResultRecord], count: str, seed: int) -> list[ResultRecord]:
    """All records, or per task the same N seeded samples at every rate point (a metric is over a set)."""
    if count == "all":
        return records
    try:
        wanted = int(count)
    except ValueError:
        raise HarnessError(f"--samples must be 'all' or a number, got {count!r}") from None
    if wanted < 1:
        raise HarnessError(f"--samples must be at least 1, got {wanted}")
    chosen = {}
    for task in sorted({r.task for r in records}):
        names = sorted({r.sample for r in records if r.task == task})
        chosen[task] = set(random.Random(f"{seed}:{task}").sample(names, min(wanted, len(names))))
    return [r for r in records if r.sample in chosen[r.task]]


def check_metrics(root: Path, meta: dict, manifest: dict, records: list[ResultRecord], source,
                  request: CrosscheckRequest, work: Path, check: Check) -> None:
    from harness.evaluate import EvaluationRequest, evaluate_run
    from harness.results import write_table

    path = root / "metrics.csv"
    if not path.exists():
        check.verdict, check.summary = "skip", "the bundle has no task metrics (metrics.csv)"
        return
    claimed = read_csv_checked(path, "metrics table", METRICS_COLUMNS, METRICS_NUMBERS)  # secondary metrics too
    chosen = subset(records, request.samples, request.seed)
    scratch = work / "rescore"
    shutil.rmtree(scratch, ignore_errors=True)
    for record in chosen:  # a run directory of just the chosen jobs, over the checker's dataset
        for relative in (record.bitstream_path, record.record_path):
            (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, scratch / relative)
    run_meta = json.loads(json.dumps(meta))
    run_meta["dataset"]["root"] = str(source.dataset.root)
    run_meta["codec"]["options"] = codec_options(manifest, request)
    write_json(scratch / "run.json", run_meta)
    write_table(scratch)
    fresh = evaluate_run(EvaluationRequest(scratch, request.heads, request.weights, progress=False))
    partial = len(chosen) < len(records)
    compared = 0
    for row in fresh.itertuples():
        mine = claimed[(claimed.task == row.task) & (claimed.rate_point.astype(str) == str(row.rate_point))
                       & (claimed.metric == row.metric)]
        if mine.empty:
            check.fail(f"{path}: no {row.metric} row for {row.task} rate point {row.rate_point}")
            continue
        number, value = int(mine.index[0]) + 2, float(mine.value.iloc[0])
        rel, floor = METRIC_TOLERANCE.get(row.task, METRIC_TOLERANCE["default"])
        compared += 1
        if partial:  # a subset's metric is not the dataset's: shown, never a verdict
            check.problems.append(f"{row.task} {row.rate_point}: {row.metric} on {row.samples} seeded samples "
                                  f"{row.value:.6g} (bundle, all samples: {value:.6g})")
        elif not math.isclose(float(row.value), value, rel_tol=rel, abs_tol=floor):
            check.fail(f"{path}:{number}: field 'value' ({row.metric}, {row.task} rate point {row.rate_point}) is "
                       f"{value:.10g}; re-scored from the decoded features: {float(row.value):.10g} "
                       f"(tolerance {rel:g} relative)")
    if partial and check.verdict == "pass":
        check.verdict = "warn"
        check.summary = (f"re-scored a seeded subset ({request.samples} samples per task, seed {request.seed}): "
                         "a subset's metric is not the dataset's, so this shows values and cannot pass; "
                         "use --samples all for a verdict")
    elif check.verdict == "pass":
        check.summary = f"{compared} metric values re-scored from the decoded features agree"


def check_reencode(root: Path, run: RunMeta, ctc: CTC, records: list[ResultRecord], source,
                   request: CrosscheckRequest, options: dict[str, str], work: Path, check: Check) -> None:
    from harness.reencode import reencode_jobs, reencode_problems

    chosen = subset(records, str(request.reencode), request.seed)
    jobs = reencode_jobs(chosen, run.quant_rule or ctc.default_quant_rule, ctc, source, options, work / "reencode")
    for problem in reencode_problems(root, chosen, jobs, request.jobs):
        check.fail(problem)
    if check.verdict == "pass":
        check.summary = (f"{len(chosen)} bitstreams ({request.reencode} seeded samples per task, every rate point) "
                         "re-encoded here in fresh processes are byte-identical")


# ---------------------------------------------------------------- BD-rates


def check_bd(root: Path, ctc: CTC, manifest: dict, check: Check) -> None:
    claimed = load_json_file(root / BD_FILE)
    if not isinstance(claimed, dict) or not isinstance(claimed.get("comparisons"), list):
        raise RunError(f"{root / BD_FILE}: field 'comparisons' missing")
    fresh = bd_rates(root, ctc, manifest["codec"]["name"], claimed.get("method", "pchip"), claimed.get("policy", "nan"))
    index = {(c.get("anchor"), c.get("on")): c for c in claimed["comparisons"] if isinstance(c, dict)}
    for comparison in fresh["comparisons"]:
        key = (comparison["anchor"], comparison["on"])
        theirs = index.pop(key, None)
        if theirs is None:
            check.fail(f"{root / BD_FILE}: no comparison against {key[0]} on {key[1]}")
            continue
        for task, mine in comparison["tasks"].items():
            got = (theirs.get("tasks") or {}).get(task, {}).get("bd_rate_percent")
            want = mine["bd_rate_percent"]
            if (got is None) != (want is None) or (want is not None and not (
                    isinstance(got, (int, float)) and abs(got - want) <= BD_TOLERANCE)):
                check.fail(f"{root / BD_FILE}: field 'bd_rate_percent' of {task} against {key[0]} on {key[1]} is "
                           f"{got}; recomputed: {want}")
    for key in index:
        check.fail(f"{root / BD_FILE}: comparison against {key[0]} on {key[1]} is not one of the CTC's anchors here")
    check.summary = f"{len(fresh['comparisons'])} comparisons against {', '.join(ctc.anchors)} recomputed"


def check_sheet(root: Path, ctc: CTC, manifest: dict, check: Check) -> None:
    from harness.sheet import sheet_csv, sheet_rows, sheet_workbook

    rows = sheet_rows(root, ctc, manifest["codec"]["name"])
    want = sheet_csv(rows).splitlines()
    have = read_regular(root / "sheet.csv", limit=64 << 20).decode("utf-8", errors="replace").splitlines()
    header = want[0].split(",") if want else []
    for number, (a, b) in enumerate(zip(have, want), 1):
        if a != b:
            cells = list(zip(a.split(","), b.split(","), header))
            column = next((name for x, y, name in cells if x != y), "?")
            check.fail(f"{root / 'sheet.csv'}:{number}: column '{column}' differs from the sheet recomputed here")
            break
    if len(have) != len(want):
        check.fail(f"{root / 'sheet.csv'}: {len(have)} lines; the sheet recomputed here has {len(want)}")
    if read_regular(root / "sheet.xlsx", limit=64 << 20) != sheet_workbook(rows):
        check.fail(f"{root / 'sheet.xlsx'}: differs from the workbook recomputed here")
    check.summary = f"sheet.csv and sheet.xlsx ({len(want) - 1} rows) recomputed"


# ---------------------------------------------------------------- the whole check


def bundle_root(bundle: Path, work: Path) -> Path:
    """The bundle's directory: as given, or unpacked from its archive into `work`."""
    bundle = Path(bundle)
    if bundle.is_dir():
        return bundle
    if bundle.is_file():
        target = work / "unpacked"
        shutil.rmtree(target, ignore_errors=True)
        return extract_archive(bundle, target)
    raise HarnessError(f"{bundle}: no such bundle (a directory or a .tar made by harness pack)")


def crosscheck(request: CrosscheckRequest) -> CrosscheckResult:
    bundle = Path(request.bundle)
    out = Path(request.out) if request.out else bundle.with_name(bundle.name.removesuffix(".tar") + ".crosscheck")
    if bundle.is_dir() and out.resolve().is_relative_to(bundle.resolve()):
        raise HarnessError(f"{out}: inside the bundle; a file added to a bundle fails its {SUMS}: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".crosscheck-", dir=out))
    try:
        return _crosscheck(request, bundle, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _crosscheck(request: CrosscheckRequest, bundle: Path, out: Path, work: Path) -> CrosscheckResult:
    root = bundle_root(bundle, work)
    checks = [_guarded(Check("integrity"), lambda c: check_integrity(root, c))]
    try:
        bundle_sha = hashlib.sha256(read_regular(root / SUMS, limit=64 << 20)).hexdigest()
    except HarnessError:
        bundle_sha = ""
    try:  # without a manifest, run.json and CTC nothing else can be checked: a report that says so
        manifest = load_json_file(root / MANIFEST)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("codec"), dict) \
                or not isinstance(manifest.get("dataset"), dict):
            raise RunError(f"{root / MANIFEST}: not a bundle manifest (fields 'codec' and 'dataset' are objects)")
        meta = load_run_meta(root)
        described = RunMeta.from_dict(meta, root / "run.json")  # the typed fields, checked once
        ctc = ctc_of_run(meta, root, request.ctc_dir)
    except HarnessError as exc:
        checks.append(Check("manifest", "fail", str(exc), [str(exc)]))
        result = CrosscheckResult(str(bundle.name), bundle_sha, checks, out / "crosscheck.json", out / "crosscheck.html")
        _write_reports(result, {"codec": {}, "dataset": {}}, request)
        return result
    records: list[ResultRecord] = []
    checks.append(_guarded(Check("records"), lambda c: (records.extend(collect_records(root)),
                                                        check_records(root, records, c))))
    checks.append(_guarded(Check("manifest"), lambda c: check_manifest(root, manifest, meta, records, c)))
    options = codec_options(manifest, request)
    checks.append(_guarded(Check("plugin"), lambda c: check_plugin(manifest, options, c)))
    checks.append(_guarded(Check("models"), lambda c: check_models(manifest, options, records, c)))
    sound = {c.name: c.verdict != "fail" for c in checks}
    source = None
    try:
        source = resolve_dataset_for(manifest, ctc, request)
    except HarnessError as exc:
        checks.append(Check("dataset", "fail", str(exc), [str(exc)]))
    points = None
    if source is not None:
        box: list[dict[tuple[str, str], int]] = []
        checks.append(_guarded(Check("dataset"), lambda c: box.append(check_dataset(manifest, records, source, c))))
        points = box[0] if box else None
    elif not any(c.name == "dataset" for c in checks):
        checks.append(Check("dataset", "skip", "no dataset here: give --dataset NAME or --data-root DIR"))
    ok_records = [r for r in records if r.status == "ok"]
    if sound["records"] and sound["plugin"] and ok_records:
        checks.append(_guarded(Check("decode"),
                               lambda c: check_decode(root, described, ctc, ok_records, request.jobs, options, c)))
    else:
        checks.append(Check("decode", "skip", "not attempted: the records or the plugin failed their checks"))
    if request.reencode:
        if source is None or not (sound["records"] and sound["plugin"]):
            checks.append(Check("re-encode", "skip", "not attempted: no dataset here, or the records or the plugin "
                                                     "failed their checks"))
        else:
            checks.append(_guarded(Check("re-encode"), lambda c: check_reencode(root, described, ctc, ok_records, source,
                                                                              request, options, work, c)))
    metrics = None
    if (root / "metrics.csv").exists():
        try:
            metrics = read_csv_checked(root / "metrics.csv", "metrics table", METRICS_COLUMNS, METRICS_NUMBERS)
        except HarnessError as exc:
            checks.append(Check("metrics.csv", "fail", str(exc), [str(exc)]))
    if sound["records"]:
        checks.append(_guarded(Check("bpfp"), lambda c: check_bpfp(root, ok_records, points, metrics, c)))
    else:
        checks.append(Check("bpfp", "skip", "not attempted: the records failed their checks"))
    if source is None:
        checks.append(Check("metrics", "skip", "no dataset here to re-score on"))
    elif not (sound["records"] and sound["plugin"]):
        checks.append(Check("metrics", "skip", "not attempted: the records or the plugin failed their checks"))
    else:
        checks.append(_guarded(Check("metrics"), lambda c: check_metrics(root, meta, manifest, ok_records, source,
                                                                        request, work, c)))
    if sound["records"]:
        checks.append(_guarded(Check("bd-rates"), lambda c: check_bd(root, ctc, manifest, c)))
        checks.append(_guarded(Check("sheet"), lambda c: check_sheet(root, ctc, manifest, c)))
    result = CrosscheckResult(str(bundle.name), bundle_sha, checks, out / "crosscheck.json", out / "crosscheck.html")
    _write_reports(result, manifest, request)
    return result


def _write_reports(result: CrosscheckResult, manifest: dict, request: CrosscheckRequest) -> None:
    from harness import __version__

    record = {"schema": "fcm-harness-crosscheck/1", "bundle": result.bundle, "bundle_sha256": result.bundle_sha256,
              "verdict": result.verdict, "ok": result.ok, "harness_version": __version__,
              "codec": {k: manifest["codec"].get(k) for k in ("name", "version")},
              "ctc_sha256": manifest.get("ctc", {}).get("sha256"), "dataset": manifest["dataset"].get("name"),
              "samples": request.samples, "seed": request.seed, "checks": [asdict(c) for c in result.checks]}
    write_json(result.json_path, record)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("harness_reports"))),
                             undefined=jinja2.StrictUndefined, autoescape=True)
    write_text(result.html_path, env.get_template("crosscheck.html.j2").render(**record))
