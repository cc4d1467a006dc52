"""`harness verify RUN_DIR`: re-decode every bitstream from its bytes alone.

Each decode runs in a fresh process (nothing cached from the encoder), and its
reconstruction hash must equal the one recorded at coding time. This is what a
second lab does to confirm a submission.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
import multiprocessing
from pathlib import Path

from harness.ctc import ctc_of_run
from harness.errors import HarnessError, RunError
from harness.jobs import input_dtype
from harness.run_meta import read_run_meta
from harness.results import ResultRecord, collect_records, read_stored


@dataclass(frozen=True)
class VerifyJob:
    run_dir: str
    codec: str
    codec_options: tuple[tuple[str, str], ...]
    plugin_modules: tuple[str, ...]
    bitstream_path: str
    bytes: int
    bitstream_sha256: str
    recon_sha256: str
    label: str
    kind: str = "frame10"
    dtype: str = "uint16"  # what the hash at coding time was taken in


@dataclass(frozen=True)
class VerifyResult:
    label: str
    ok: bool
    problem: str = ""


def decode_and_hash(job: VerifyJob) -> VerifyResult:
    from harness.jobs import canonical_hash, canonical_output, codec_for_verify
    try:
        data = read_stored(Path(job.run_dir), job.bitstream_path, job.bytes, job.bitstream_sha256, job.label)
    except HarnessError as exc:
        return VerifyResult(job.label, False, str(exc))
    try:
        codec = codec_for_verify(job.codec, job.codec_options, job.plugin_modules)
        digest = canonical_hash(canonical_output(codec.decode(data), job.kind, job.dtype))
        if digest != job.recon_sha256:
            return VerifyResult(job.label, False, "reconstruction differs from the one recorded at coding time")
        return VerifyResult(job.label, True)
    except Exception as exc:  # report every failure, keep verifying the rest
        return VerifyResult(job.label, False, f"decode failed: {type(exc).__name__}: {exc}")


def verify_jobs(run_dir: Path, plugin_modules: tuple[str, ...] = ()) -> list[VerifyJob]:
    meta = read_run_meta(run_dir)
    records: list[ResultRecord] = [r for r in collect_records(run_dir) if r.status == "ok"]
    if not records:
        raise RunError(f"{run_dir}: no finished jobs to verify")
    ctc = ctc_of_run(meta.raw, run_dir)
    return [VerifyJob(str(run_dir), r.codec, meta.option_items, plugin_modules, r.bitstream_path, r.bytes,
                      r.bitstream_sha256, r.recon_sha256, r.job_label, meta.input_kind,
                      input_dtype(meta.input_kind, ctc.task(r.task).dtype)) for r in records]


def verify_run(run_dir: Path, workers: int = 2, plugin_modules: tuple[str, ...] = (),
               on_result: Callable[[VerifyResult], None] | None = None) -> list[VerifyResult]:
    """Decode every ok bitstream in fresh processes (one per decode) and compare hashes."""
    jobs = verify_jobs(Path(run_dir), plugin_modules)
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context, max_tasks_per_child=1) as pool:
        for result in _as_completed(pool, jobs):
            results.append(result)
            if on_result:
                on_result(result)
    return results


def _as_completed(pool: ProcessPoolExecutor, jobs: list[VerifyJob]) -> Iterator[VerifyResult]:
    yield from pool.map(decode_and_hash, jobs)
