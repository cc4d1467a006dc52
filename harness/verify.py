"""`harness verify RUN_DIR`: re-decode every bitstream from its bytes alone.

Each decode runs in a decode-only worker process (harness.decode_pool: never a process that
encoded, reused across bitstreams, with a memory cap and a timeout), and its reconstruction hash
must equal the one recorded at coding time. This is what a second lab does to confirm a submission.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.ctc import ctc_of_run
from harness.decode_pool import DecodeJob, DecodeLimits, DecodeResult, decode_jobs
from harness.errors import RunError
from harness.jobs import input_dtype
from harness.run_meta import read_run_meta
from harness.results import ResultRecord, collect_records

# The names this module has always had: a verify job is a decode job.


def verify_jobs(run_dir: Path, plugin_modules: tuple[str, ...] = ()) -> list[DecodeJob]:
    meta = read_run_meta(run_dir)
    records: list[ResultRecord] = [r for r in collect_records(run_dir) if r.status == "ok"]
    if not records:
        raise RunError(f"{run_dir}: no finished jobs to verify")
    ctc = ctc_of_run(meta.raw, run_dir)
    return [DecodeJob(str(run_dir), r.codec, meta.option_items, plugin_modules, r.bitstream_path, r.bytes,
                      r.bitstream_sha256, r.recon_sha256, r.job_label, meta.input_kind,
                      input_dtype(meta.input_kind, ctc.task(r.task).dtype)) for r in records]


def verify_run(run_dir: Path, workers: int = 2, plugin_modules: tuple[str, ...] = (),
               on_result: Callable[[DecodeResult], None] | None = None,
               limits: DecodeLimits | None = None) -> list[DecodeResult]:
    """Decode every ok bitstream in decode-only worker processes and compare hashes (job order)."""
    return decode_jobs(verify_jobs(Path(run_dir), plugin_modules), workers, limits, on_result)
