"""The checks of a crosscheck, each `check_*(ctx, check)` (or over the files it needs), one verdict
each; `harness.crosscheck` orders them and says which need which."""

from __future__ import annotations

import json
import math
from pathlib import Path
import random
import shutil
from typing import Any

from harness.bundle import BD_FILE, MANIFEST, SUMS, bd_rates, write_json
from harness.crosscheck_context import (BD_TOLERANCE, BPFP_TOLERANCE, METRIC_TOLERANCE, MSE_TOLERANCE,
                                        NOT_BIT_EXACT_MSE_TOLERANCE, SCRUBBED, Check, Context, CrosscheckRequest,
                                        codec_options)
from harness.ctc import CTC, checker_ctc
from harness.errors import HarnessError, RunError
from harness.formats.base import Fields, read_json
from harness.formats.manifest import read_manifest
from harness.jobs import input_dtype
from harness.results import COLUMNS, ResultRecord, read_bitstream, table_records
from harness.run_meta import RunMeta, read_run_meta
from harness.safe_io import inside, is_sha256, read_regular, sha256_regular, walk_tree


# ---------------------------------------------------------------- integrity


def check_integrity(root: Path, check: Check) -> tuple[str, ...]:
    """Hashes against SHA256SUMS; returns the links and special files found (never followed)."""
    from harness.bundle import MAX_FILE_BYTES

    tree = walk_tree(root)
    for entry in tree.strange:
        check.fail(f"{root}/{entry}: a bundle holds only regular files and folders")
    text = read_regular(root / SUMS, limit=64 << 20).decode("utf-8", errors="replace")
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not is_sha256(digest):
            raise RunError(f"{root / SUMS}:{number}: not '<sha256>  <path>'")
        inside(root, name, f"{root / SUMS}:{number}", "path")
        listed[name] = digest
    present = set(tree.files) - {SUMS}
    for name in sorted(present - set(listed)):
        check.fail(f"{root / name}: not listed in {SUMS}")
    for name in sorted(set(listed) - present):
        check.fail(f"{root / name}: listed in {SUMS} but missing")
    for name in sorted(set(listed) & present):
        try:
            digest = sha256_regular(root / name, MAX_FILE_BYTES)
        except HarnessError as exc:
            check.fail(str(exc))
            continue
        if digest != listed[name]:
            check.fail(f"{root / name}: sha256 differs from {SUMS}")
    if MANIFEST not in listed:
        check.fail(f"{root / SUMS}: does not list {MANIFEST}")
    check.summary = (f"{len(listed)} files match {SUMS}" if check.verdict == "pass"
                     else f"{len(check.problems)} file(s) do not match {SUMS}")
    return tree.strange


# ---------------------------------------------------------------- manifest


def check_manifest(ctx: Context, check: Check) -> None:
    """The typed manifest and run.json, the checker's CTC by their sha256, and their agreement."""
    root = ctx.root
    manifest = read_manifest(root)
    run = read_run_meta(root)
    where = root / MANIFEST
    ctx.ctc = checker_ctc(manifest.ctc.sha256, where, ctx.request.ctc_dir)
    ctx.manifest, ctx.run = manifest, run
    key = run.raw.get("run_key", {})
    recorded_ctc = run.raw.get("ctc", {})
    pairs = [("ctc.sha256", manifest.ctc.sha256, "ctc.sha256", recorded_ctc.get("sha256")),
             ("ctc.sha256", manifest.ctc.sha256, "run_key.ctc_sha256", key.get("ctc_sha256")),
             ("dataset.name", manifest.dataset.name, "dataset.name", run.dataset),
             ("dataset.content_sha256", dict(manifest.dataset.content_sha256), "dataset.content_sha256",
              run.raw.get("dataset", {}).get("content_sha256", {})),
             ("dataset.sample_lists", dict(manifest.dataset.sample_lists), "run_key.sample_lists",
              key.get("sample_lists", {})),
             ("codec.name", manifest.codec.name, "codec.name", run.codec),
             ("codec.version", manifest.codec.version, "codec.version", run.codec_version),
             ("codec.options", dict(manifest.codec.options), "run_key.codec_options", run.options),
             ("codec.quant_rule", manifest.codec.quant_rule, "run_key.quant_rule", run.quant_rule)]
    for ours, mine, theirs, value in pairs:
        if mine != value:
            check.fail(f"{where}: field '{ours}' is {str(mine)[:80]!r}, but run.json's '{theirs}' is "
                       f"{str(value)[:80]!r}")
    for record in ctx.records:
        if record.codec != manifest.codec.name or record.codec_version != manifest.codec.version:
            check.fail(f"{root}/{record.record_path}: fields 'codec'/'codec_version' are {record.codec} "
                       f"{record.codec_version}, the manifest's {manifest.codec.name} {manifest.codec.version}")
            break
    if ctx.records and manifest.contents.records != len(ctx.records):
        check.fail(f"{where}: field 'contents.records' is {manifest.contents.records}; the bundle holds "
                   f"{len(ctx.records)} records")
    check.summary = (f"schema, run.json and the records agree; CTC {ctx.ctc.name} {ctx.ctc.version} "
                     f"({ctx.ctc.sha256[:12]}) is the checker's own")


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


def check_plugin(ctx: Context, check: Check) -> None:
    """The codec installed here is the bundle's; never a module or entry point the bundle names."""
    from harness.registry import default_registry

    assert ctx.manifest is not None
    codec = ctx.manifest.codec
    try:
        registered = default_registry().codec(codec.name)
    except HarnessError:
        message = (f"codec '{codec.name}' {codec.version} is not installed here; install it to check this bundle: "
                   f"{ctx.manifest.install_hint()}")
        if "no-plugin" in ctx.request.accept:
            check.verdict, check.summary = "skip", message + " (accepted: --accept no-plugin)"
        else:
            check.fail(message)
        return
    spec, source = registered.spec, registered.source
    ctx.spec = spec
    if spec.version != codec.version:
        check.fail(f"{MANIFEST}: field 'codec.version' is {codec.version!r}; installed {codec.name} is "
                   f"{spec.version!r} (from {source.describe()}); install {ctx.manifest.install_hint()}")
    if source.distribution != codec.plugin.distribution:
        check.fail(f"{MANIFEST}: field 'codec.plugin.distribution' is {codec.plugin.distribution!r}; installed "
                   f"{codec.name} comes from {source.distribution!r}")
    elif source.version != codec.plugin.distribution_version:
        check.warn(f"{MANIFEST}: field 'codec.plugin.distribution_version' is "
                   f"{codec.plugin.distribution_version!r}; installed {source.distribution} is {source.version!r} "
                   "(same codec version; decoding decides)")
    ctx.options, ctx.ignored = codec_options(ctx)
    for key, value in sorted(ctx.options.items()):
        if SCRUBBED in str(value):
            check.fail(f"{MANIFEST}: codec option '{key}' was a path on the packing machine; give yours with "
                       f"-o {key}=VALUE")
    # a folder of the packing machine the codec needs (klt's models=DIR): the checker names its own
    for key in ctx.ignored:
        if SCRUBBED in str(ctx.run.options.get(key)) and key not in dict(ctx.request.options):
            check.fail(f"{MANIFEST}: codec option '{key}' was a path on the packing machine; give yours with "
                       f"-o {key}=VALUE")
    missing = spec.missing(ctx.options)
    if missing:
        check.fail(f"codec '{codec.name}' cannot run here: {missing}")
    if check.verdict != "fail":
        try:
            spec.open(dict(ctx.options))  # options it refuses, or model files it cannot find: said here
        except Exception as exc:  # a plugin may raise anything
            check.fail(f"codec '{codec.name}' cannot be built with options {ctx.options}: {exc}")
    ignored = (f"; not taken from the bundle (this machine's settings): {', '.join(ctx.ignored)}"
               if ctx.ignored else "")
    check.summary = f"installed {codec.name} {spec.version} from {source.describe()}{ignored}"


def check_models(ctx: Context, check: Check) -> None:
    from harness.feature_hashes import file_sha256

    assert ctx.manifest is not None
    spec, options, records = ctx.spec, ctx.options, ctx.records
    wanted = {(m.name, m.sha256): m for m in ctx.manifest.model_files}
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
        if found[key] != wanted[key].size:
            check.fail(f"{MANIFEST}: model file {key[0]}: field 'size' is {wanted[key].size}, installed {found[key]}")
    check.summary = f"{len(wanted)} model file(s) match"


# ---------------------------------------------------------------- dataset, coverage, decode, distortion, bpfp


def resolve_dataset_for(ctx: Context):
    """The checker's copy of the dataset: --dataset / --data-root, else the built-in dataset whose
    label the bundle names (e.g. demo-v3, mini-v2-...). None when there is none."""
    from harness.registry import default_registry
    from harness.sources import resolve_dataset

    registry, request = default_registry(), ctx.request
    if request.dataset or request.data_root:
        return resolve_dataset(request.dataset, request.data_root, ctx.ctc, registry, progress=False)
    label = ctx.manifest.dataset.name
    for name in sorted(registry.datasets):
        if label.startswith(f"{name}-v"):
            return resolve_dataset(name, None, ctx.ctc, registry, progress=False)
    return None


def check_dataset(ctx: Context, check: Check) -> None:
    """Points per (task, sample) from the checker's feature files; every record names its feature's
    sha256 and it must be the dataset's."""
    from harness.feature_hashes import content_fingerprint, file_sha256
    from harness.npyio import read_npy_header

    manifest = ctx.manifest
    ctx.source = resolve_dataset_for(ctx)
    if ctx.source is None:
        message = (f"no dataset here for the bundle's '{manifest.dataset.name}': give --dataset NAME or --data-root "
                   "DIR (features, distortion and metrics cannot be checked without it)")
        if "no-dataset" in ctx.request.accept:
            check.verdict, check.summary = "skip", message + " (accepted: --accept no-dataset)"
        else:
            check.fail(message)
        return
    source = ctx.source
    points: dict[tuple[str, str], int] = {}
    if source.label != manifest.dataset.name:
        check.warn(f"the dataset here is '{source.label}', the bundle's '{manifest.dataset.name}' "
                   "(feature hashes decide)")
    for task, wanted in sorted(manifest.dataset.sample_lists.items()):
        have = source.dataset.fingerprint([task])
        if have != wanted:
            check.fail(f"{MANIFEST}: field 'dataset.sample_lists.{task}' is {wanted[:12]}, the sample list here "
                       f"{have[:12]} ({source.dataset.sample_list_path(task)})")
    digests: dict[str, dict[str, str]] = {}
    for record in ctx.records:
        key = (record.task, record.sample)
        if not is_sha256(record.feature_sha256):
            check.fail(f"{ctx.root}/{record.record_path}: field 'feature_sha256' is empty or not a sha256; "
                       "every record names the feature it coded")
        if key in points:
            wanted = digests.get(record.task, {}).get(record.sample)
            if is_sha256(record.feature_sha256) and wanted and record.feature_sha256 != wanted:
                check.fail(f"{ctx.root}/{record.record_path}: field 'feature_sha256' differs from the dataset's")
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
        if is_sha256(record.feature_sha256) and digest != record.feature_sha256:
            check.fail(f"{ctx.root}/{record.record_path}: field 'feature_sha256' differs from the sha256 of "
                       f"{path} (another sample's bitstream?)")
    for task, wanted in sorted(manifest.dataset.content_sha256.items()):
        if task in digests and content_fingerprint(digests[task]) != wanted:
            check.fail(f"{MANIFEST}: field 'dataset.content_sha256.{task}' differs from the features here")
    ctx.points = points
    check.summary = f"{len(points)} features of '{source.label}' match the bundle's records"


def check_coverage(ctx: Context, check: Check) -> None:
    """Each task's records: the codec's rate points only, and at each the whole sample list (a subset
    fails unless the checker accepts it by name)."""
    from harness.runner import codec_rate_points

    accepted = "subset" in ctx.request.accept
    counts = []
    for task in sorted({r.task for r in ctx.records}):
        records = [r for r in ctx.records if r.task == task]
        try:
            allowed = codec_rate_points(ctx.spec, ctx.ctc, task)
        except HarnessError as exc:
            check.fail(f"task '{task}': {exc}")
            continue
        listed = ctx.source.dataset.sample_ids(task)
        for point in sorted({r.rate_point for r in records}):
            if point not in allowed:
                check.fail(f"{ctx.root}/records/{task}: rate point {point:g} is not one of {ctx.codec_name}'s "
                           f"({', '.join(f'{p:g}' for p in allowed)})")
        covered = {p: {r.sample for r in records if r.rate_point == p} for p in allowed}
        unknown = sorted({r.sample for r in records} - set(listed))
        if unknown:
            check.fail(f"{ctx.root}/records/{task}: sample(s) {', '.join(unknown[:5])} are not in the sample list here")
        short = {p: len(set(listed) - s) for p, s in covered.items() if set(listed) - s}
        if short:
            gap = "; ".join(f"{ctx.records[0].rate_parameter}{p:g}: {len(covered[p])} of {len(listed)}"
                            for p in sorted(short))
            message = f"task '{task}' covers only part of its sample list ({gap} samples)"
            if accepted:
                check.warn(message + " (accepted: --accept subset; its numbers are not the CTC's)")
            else:
                check.fail(message + "; a result covers every listed sample at every rate point "
                           "(--accept subset to check a subset)")
        counts.append(f"{task} {min(len(s) for s in covered.values())} of {len(listed)} samples "
                      f"x {sum(bool(s) for s in covered.values())} rate points")
    check.summary = "; ".join(counts) or "no records"


def check_decode(ctx: Context, check: Check) -> None:
    """Every bitstream decoded in a decode-only worker (never one that encoded), from the bytes alone,
    under a memory cap and a timeout: a hostile bitstream fails its job, not the check. With the
    checker's dataset here, the worker also measures each reconstruction's feature MSE."""
    from harness.decode_pool import DecodeJob, Original, decode_jobs

    run, ctc, source = ctx.run, ctx.ctc, ctx.source
    options, kind = tuple(sorted(ctx.options.items())), run.input_kind
    quant_rule = run.quant_rule or ctc.default_quant_rule
    work = [DecodeJob(str(ctx.root), r.codec, options, (), r.bitstream_path, r.bytes, r.bitstream_sha256,
                      r.recon_sha256, r.job_label, kind, input_dtype(kind, ctc.task(r.task).dtype),
                      Original(str(source.dataset.feature_path(r.task, r.sample)), str(ctc.root), r.task,
                               ctx.spec.family, quant_rule) if source is not None else None)
            for r in ctx.ok_records]
    results = decode_jobs(work, ctx.request.jobs)
    ctx.decoded = {r.label: r for r in results}
    for result in results:
        if not result.ok:
            check.fail(f"{ctx.root}/records/{result.label}.json: {result.problem}")
    good = sum(r.ok for r in results)
    check.summary = f"{good} of {len(results)} bitstreams decode to their recorded reconstruction (decode-only processes)"


def check_distortion(ctx: Context, check: Check) -> None:
    """Feature MSE re-measured: the decode workers restored each reconstruction with the CTC's
    post-processing and measured it against the dataset's feature. A reconstruction of another hash
    whose MSE agrees within NOT_BIT_EXACT_MSE_TOLERANCE makes the decode check 'decoder not bit-exact
    here', not a forgery."""
    worst, near = 0.0, []
    for record in ctx.ok_records:
        where = f"{ctx.root}/{record.record_path}"
        result = ctx.decoded.get(record.job_label)
        if result is None or result.mse is None:
            why = (result.mse_problem or result.problem) if result else "not decoded"
            check.fail(f"{where}: feature MSE not measured: {why}")
            continue
        mse = result.mse
        distance = abs(mse - record.mse) / max(abs(mse), 1e-30) if math.isfinite(record.mse) else math.inf
        worst = max(worst, distance)
        if result.mismatch:
            if distance <= NOT_BIT_EXACT_MSE_TOLERANCE:
                near.append(f"{record.job_label}: MSE here {mse:.6g}, claimed {record.mse:.6g}")
            else:
                check.fail(f"{where}: reconstruction differs from the record and its MSE here is {mse:.10g}, "
                           f"field 'mse' says {record.mse:.10g}")
        elif distance > MSE_TOLERANCE:
            check.fail(f"{where}: field 'mse' is {record.mse:.10g}; re-measured from the decoded and the dataset's "
                       f"features: {mse:.10g}")
    ctx.not_bit_exact = near
    check.summary = (f"feature MSE of {len(ctx.ok_records)} reconstructions re-measured (largest relative "
                     f"difference {worst:.2g}; tolerance {MSE_TOLERANCE:g})")


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


def check_metrics(ctx: Context, check: Check) -> None:
    from harness.evaluate import EvaluationRequest, evaluate_run
    from harness.results import write_table

    root, request = ctx.root, ctx.request
    path = root / "metrics.csv"
    if ctx.metrics is None:
        check.verdict, check.summary = "skip", "the bundle has no task metrics (metrics.csv)"
        return
    claimed = ctx.metrics
    chosen = subset(ctx.ok_records, request.samples, request.seed)
    scratch = ctx.work / "rescore"
    shutil.rmtree(scratch, ignore_errors=True)
    for record in chosen:  # a run directory of just the chosen jobs, over the checker's dataset
        for relative in (record.bitstream_path, record.record_path):
            (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, scratch / relative)
    run_meta = json.loads(json.dumps(ctx.run.raw))
    run_meta["dataset"]["root"] = str(ctx.source.dataset.root)
    run_meta["ctc"]["root"] = str(ctx.ctc.root)  # the checker's own conditions, found by their sha256
    run_meta["codec"].pop("options", None)
    run_meta.setdefault("run_key", {})["codec_options"] = dict(ctx.options)
    write_json(scratch / "run.json", run_meta)
    write_table(scratch)
    fresh = evaluate_run(EvaluationRequest(scratch, request.heads, request.weights, progress=False),
                         ctc_dir=ctx.ctc.root)
    partial = len(chosen) < len(ctx.ok_records)
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


def comparison_of(ctx: Context):
    """The bundle against the checker's anchors, made once for the bd-rates and sheet checks."""
    from harness.comparison import compare_run

    if ctx.comparison is None:
        ctx.comparison = compare_run(ctx.root, ctx.ctc, ctx.codec_name)
    return ctx.comparison


def check_bd(ctx: Context, check: Check) -> None:
    """bd-rates.json against the BD-rates recomputed here, with the settings `harness pack` uses (a
    bundle does not choose how the checker computes: another method or policy is itself a mismatch)."""
    ctc, path = ctx.ctc, ctx.root / BD_FILE
    top = Fields(read_json(path, 16 << 20), path)
    for key, want in (("method", "pchip"), ("policy", "nan")):
        have = top.text(key, max_length=20)
        if have != want:
            check.fail(f"{path}: field '{key}' is {have!r}; bundles are compared with {want!r}")
    claimed: dict[tuple[str, str], dict[str, float | None]] = {}
    for item in top.tables("comparisons", max_items=1000):
        tasks = item.table("tasks", {})
        claimed[(item.text("anchor", max_length=200), item.text("on", max_length=20))] = {
            task: tasks.table(task).number("bd_rate_percent", nullable=True) for task in sorted(tasks.data)}
    fresh = bd_rates(comparison_of(ctx), ctc)
    for comparison in fresh["comparisons"]:
        key = (comparison["anchor"], comparison["on"])
        theirs = claimed.pop(key, None)
        if theirs is None:
            check.fail(f"{path}: no comparison against {key[0]} on {key[1]}")
            continue
        for task, mine in comparison["tasks"].items():
            got, want = theirs.get(task), mine["bd_rate_percent"]
            if (got is None) != (want is None) or (want is not None and abs(got - want) > BD_TOLERANCE):
                check.fail(f"{path}: field 'bd_rate_percent' of {task} against {key[0]} on {key[1]} is {got}; "
                           f"recomputed: {want}")
    for key in claimed:
        check.fail(f"{path}: comparison against {key[0]} on {key[1]} is not one of the CTC's anchors here")
    check.summary = (f"{len(fresh['comparisons'])} comparisons against {', '.join(ctc.anchors)} recomputed; "
                     "encode/decode times are the proponent's own measurements (not re-checked)")


def check_sheet(ctx: Context, check: Check) -> None:
    from harness.sheet import sheet_csv, sheet_rows, sheet_workbook

    root = ctx.root
    rows = sheet_rows(comparison_of(ctx))
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

