"""Plan and execute a run: every (task, rate point, sample) of one codec.

Resumable: a job whose record and bitstream are on disk and intact is skipped;
one that is missing, failed or corrupt is redone. Interrupting a run loses
nothing already finished, because each job writes its own record atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
import hashlib
import os
from pathlib import Path
import sys
from typing import TypeVar

import pandas as pd
from tqdm import tqdm

from harness.codec import CodecSpec
from harness.ctc import CTC
from harness.dataset import Dataset, check_header, check_sample_id, read_id_file
from harness.errors import DatasetError, HarnessError, OutputError, RunError
from harness.executors import Executor, local_executor
from harness.feature_hashes import FeatureHashes, content_fingerprint
from harness.jobs import Job, registry_for, run_job
from harness.locks import Locked, exclusive
from harness.npyio import atomic_write_json
from harness.provenance import check_resumable, now, read_run_json, write_run_json
from harness.safe_io import check_run_folders
from harness.registry import Registered
from harness.results import ResultRecord, is_complete, job_paths, read_record, write_table
from harness.sources import DatasetSource, cache_dir, resolve_ctc, resolve_dataset
from harness.validate import sha256_file

T = TypeVar("T")


@dataclass
class RunRequest:
    """Everything `harness run` needs; the CLI only fills this in."""

    codec: str
    tasks: Sequence[str] | None = None
    dataset: str | None = None
    data_root: Path | None = None
    samples_file: Path | None = None
    limit: int | None = None
    out: Path | None = None
    jobs: int | None = None
    rate_points: Sequence[float] | None = None
    codec_options: dict[str, str] = field(default_factory=dict)
    quant_rule: str | None = None
    ctc_dir: Path | None = None
    plugin_modules: tuple[str, ...] = ()
    rate_points_of: str | None = None  # take the rate points of this task's table (generalization study)
    command: Sequence[str] = ()
    progress: bool = True


@dataclass
class RunOutcome:
    run_dir: Path
    planned: int
    skipped: int
    ran: int
    failures: list[ResultRecord]
    table: pd.DataFrame


def codec_rate_points(spec: CodecSpec, ctc: CTC, task: str) -> tuple[float, ...]:
    """The codec's rate points for a task: its own, or the CTC's of its family."""
    points = spec.rate_points
    if points is None:
        if not spec.family:
            raise HarnessError(f"codec '{spec.name}' declares no rate points and no family")
        parameter = ctc.rate_parameter(spec.family)
        if spec.rate_parameter != parameter:  # the family's points would be read as something else
            raise HarnessError(f"codec '{spec.name}' takes the {spec.family} family's rate points, which are "
                               f"{parameter} values in CTC {ctc.name}, but names its rate parameter "
                               f"'{spec.rate_parameter}'")
        return ctc.rate_points(task, spec.family)
    if isinstance(points, dict) or hasattr(points, "keys"):
        if task not in points:
            raise HarnessError(f"codec '{spec.name}' has no rate points for task '{task}'")
        return tuple(points[task])
    return tuple(points)


def select_rate_points(spec: CodecSpec, available: tuple[float, ...], wanted: Sequence[float] | None,
                       task: str) -> tuple[float, ...]:
    if not wanted:
        return available
    unknown = [w for w in wanted if not any(abs(w - a) <= 1e-9 * max(1.0, abs(a)) for a in available)]
    if unknown:
        listing = ", ".join(f"{a:g}" for a in available)
        raise HarnessError(f"rate point(s) {', '.join(f'{u:g}' for u in unknown)} not among {spec.name}'s "
                           f"{spec.rate_parameter} values for '{task}': {listing}")
    return tuple(a for a in available if any(abs(w - a) <= 1e-9 * max(1.0, abs(a)) for w in wanted))


def default_out(dataset_label: str, codec: str) -> Path:
    return Path("runs") / dataset_label / codec


def plan(request: RunRequest, registered: Registered, ctc: CTC, dataset: Dataset, run_dir: Path) -> list[Job]:
    spec: CodecSpec = registered.spec
    tasks = list(request.tasks) if request.tasks else dataset.available_tasks()
    for task in tasks:
        ctc.task(task)  # unknown task -> "did you mean"
        if not dataset.has_task(task):
            raise DatasetError(f"{dataset.task_dir(task)}: the dataset has no '{task}' task")
    only = read_id_file(request.samples_file) if request.samples_file else None
    jobs: list[Job] = []
    missing: list[str] = []
    hashes = FeatureHashes(cache_dir() / "feature-sha256.json")
    for task in tasks:
        samples = dataset.samples(task, only=only, limit=request.limit)
        table_task = request.rate_points_of or task
        points = select_rate_points(spec, codec_rate_points(spec, ctc, table_task), request.rate_points, table_task)
        for sample in samples:
            check_sample_id(sample.id, str(dataset.sample_list_path(task)))
            if not sample.path.exists():
                missing.append(str(sample.path))
                continue
            check_header(sample.path, ctc.task(task))  # shape/dtype/pickle/truncation before any coding
            digest = hashes.digest(sample.path)
            for point in points:
                jobs.append(Job(spec.name, task, spec.rate_parameter, float(point), sample.id, str(sample.path),
                                str(run_dir), str(ctc.root), request.quant_rule or ctc.default_quant_rule,
                                tuple(sorted(request.codec_options.items())), request.plugin_modules, digest))
    hashes.save()
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: listed sample missing{more}")
    if only is not None and not jobs:
        raise DatasetError(f"{request.samples_file}: none of its sample ids is in the selected tasks' lists")
    if not jobs:
        raise DatasetError("nothing to run: no samples selected")
    return jobs


def _done(run_dir: Path, job: Job) -> bool:
    """Finished and intact, and coded from the feature as it is now."""
    record = read_record(job_paths(run_dir, *job.key).record)
    return is_complete(run_dir, record) and record is not None and record.feature_sha256 == job.feature_sha256


def prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"{run_dir}: output directory is not writable ({exc.strerror or exc})") from None


def model_fingerprints(spec: CodecSpec, options: Mapping[str, str], jobs: Sequence[Job]) -> dict[str, str]:
    """'task@rate_point' -> sha256 of the model files the codec codes that job with (learned codecs)."""
    if spec.model_files is None:
        return {}
    out = {}
    for task, point in sorted({(j.task, j.rate_point) for j in jobs}):
        digest = hashlib.sha256()
        for path in spec.model_files(options, task, point):
            digest.update(Path(path).name.encode() + b"\0" + sha256_file(Path(path)).encode())
        out[f"{task}@{point:g}"] = digest.hexdigest()
    return out


def execute(request: RunRequest, executor: Executor | None = None) -> RunOutcome:
    """Run (or resume) the coding stage for one codec."""
    registry = registry_for(request.plugin_modules)
    ctc = resolve_ctc(request.ctc_dir, request.dataset, registry)
    registered = registry.codec(request.codec)
    spec: CodecSpec = registered.spec
    missing_tool = spec.missing(request.codec_options)
    if missing_tool:
        raise HarnessError(f"codec '{spec.name}' cannot run here: {missing_tool}")
    for task in request.tasks or ():
        ctc.task(task)  # fail on a typo before any dataset is made
    if request.quant_rule not in (None, *ctc.quant_rules):
        raise HarnessError(f"unknown quantization rule '{request.quant_rule}'; available: {', '.join(ctc.quant_rules)}")
    try:  # bad options or missing model files: one line, before any work
        spec.open(request.codec_options)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise HarnessError(f"codec '{spec.name}': bad option value ({exc})") from None
    source = resolve_dataset(request.dataset, request.data_root, ctc, registry, progress=request.progress)
    run_dir = Path(request.out) if request.out else default_out(source.label, spec.name)
    prepare_run_dir(run_dir)
    check_run_folders(run_dir)
    with run_dir_lock(run_dir):
        return _plan_and_run(request, executor, registered, ctc, source, run_dir)


RUN_LOCK = ".harness-run.lock"


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Held for a whole run: a second run on the same --out is refused instead of interleaving its
    records, table and run.json with the first's. The kernel frees it when a run dies."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive(run_dir / RUN_LOCK))
        except Locked as exc:
            who = f"pid {exc.pid}" if exc.pid else "another process"
            raise RunError(f"{run_dir}: another harness run ({who}) is using this directory; "
                           "wait for it to end or use another --out") from None
        except OSError as exc:
            raise RunError(f"{run_dir}: cannot lock the run directory ({exc.strerror or exc})") from None
        yield


def _plan_and_run(request: RunRequest, executor: Executor | None, registered: Registered, ctc: CTC,
                  source: DatasetSource, run_dir: Path) -> RunOutcome:
    spec: CodecSpec = registered.spec
    jobs = plan(request, registered, ctc, source.dataset, run_dir)

    tasks = sorted({j.task for j in jobs})
    key = {
        "codec": spec.name, "codec_version": spec.version,
        "codec_options": dict(sorted(request.codec_options.items())),
        "ctc_sha256": ctc.sha256, "quant_rule": request.quant_rule or ctc.default_quant_rule,
        "dataset": source.label,
        "sample_lists": {t: source.dataset.fingerprint([t]) for t in tasks},
        "model_fingerprints": model_fingerprints(spec, request.codec_options, jobs),
    }
    existing = read_run_json(run_dir)
    if existing:
        check_resumable(existing, key, run_dir)
    pending = [j for j in jobs if not _done(run_dir, j)]
    invocation = {"started": now(), "command": list(request.command), "planned": len(jobs),
                  "skipped": len(jobs) - len(pending)}
    details = {
        "codec": {"name": spec.name, "version": spec.version, "family": spec.family, "input_kind": spec.input_kind,
                  "rate_parameter": spec.rate_parameter,  # the options: run_key.codec_options only
                  "source": registered.source.describe(),
                  "tools": spec.provenance(request.codec_options) if spec.provenance else {}},
        "ctc": {"name": ctc.name, "version": ctc.version, "sha256": ctc.sha256, "title": ctc.title,
                "root": str(ctc.root)},
        "dataset": {"name": source.label, "synthetic": source.synthetic, "root": str(source.dataset.root),
                    "samples": {t: len({j.sample for j in jobs if j.task == t}) for t in tasks},
                    "content_sha256": {t: content_fingerprint({j.sample: j.feature_sha256 for j in jobs if j.task == t})
                                       for t in tasks}},
    }
    write_run_json(run_dir, existing, key, details, invocation)

    tally = Tally()
    try:
        _run_jobs(pending, request, executor, spec.name, len(jobs), tally)
    except BaseException as exc:  # interrupted, disk full, ...: the table still shows every finished job
        _wrap_up(run_dir, invocation, tally, quiet=True)
        if isinstance(exc, OutputError):
            raise OutputError(f"{exc}; {RESUME_HINT}") from None
        raise
    table = _wrap_up(run_dir, invocation, tally)
    return RunOutcome(run_dir, len(jobs), len(jobs) - len(pending), tally.ran, tally.failures, table)


RESUME_HINT = "finished jobs are kept: make room (or make it writable) and run the same command again to resume"


@dataclass
class Tally:
    """What a run really did, for run.json even when it is cut short."""

    ran: int = 0
    failures: list[ResultRecord] = field(default_factory=list)

    def add(self, record: ResultRecord) -> None:
        self.ran += 1
        if record.status != "ok":
            self.failures.append(record)


def _wrap_up(run_dir: Path, invocation: dict, tally: Tally, quiet: bool = False) -> pd.DataFrame | None:
    """Rebuild results.csv and count this invocation in run.json. `quiet` when another error is
    already on its way: then a failure here (e.g. the same full disk) must not replace it."""
    invocation.update(finished=now(), ran=tally.ran, failed=len(tally.failures))
    # each on its own: the small run.json may fit where results.csv did not
    table = _unless_quiet(lambda: write_table(run_dir), quiet)
    _unless_quiet(lambda: _finish_run_json(run_dir, invocation), quiet)
    return table


def _unless_quiet(step: Callable[[], T], quiet: bool) -> T | None:
    try:
        return step()
    except Exception:
        if not quiet:
            raise
        return None


def _run_jobs(pending: list[Job], request: RunRequest, executor: Executor | None, label: str,
              total: int, tally: Tally) -> None:
    if not pending:
        return
    workers = request.jobs or os.cpu_count() or 1
    owned = executor is None  # an executor passed in belongs to the caller, who closes it
    executor = executor or local_executor(min(workers, len(pending)))
    bar = tqdm(total=total, initial=total - len(pending), desc=f"{label}", unit="job",
               disable=not request.progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for record in executor.run(run_job, pending):
            tally.add(record)
            if record.status != "ok":
                bar.set_postfix(failed=len(tally.failures))
            bar.update(1)
    finally:
        bar.close()
        if owned:
            executor.close()


def _finish_run_json(run_dir: Path, invocation: dict) -> None:
    data = read_run_json(run_dir) or {}
    if data.get("invocations"):
        data["invocations"][-1] = invocation
    atomic_write_json(run_dir / "run.json", data)
