"""Encoder determinism, the optional step of a cross-check (`harness crosscheck --reencode N`).

Decoding a bundle proves its bitstreams give its reconstructions; it says nothing about whether the
encoder the bundle names made them. Re-encoding a seeded subset of the jobs here, in fresh processes,
from the checker's copy of the features, and comparing the bitstreams' sha256 does. A difference is
reported per job with both sizes: an encoder that is not deterministic across machines (thread
scheduling, SIMD paths) or features that differ (the dataset check says which) both show up here.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from harness.ctc import CTC
from harness.jobs import Job, run_job
from harness.results import ResultRecord


def reencode_jobs(records: list[ResultRecord], quant_rule: str, ctc: CTC, source: Any, options: dict[str, str],
                  scratch: Path) -> list[Job]:
    """The bundle's jobs for these records, coded into `scratch` instead of the bundle."""
    return [Job(r.codec, r.task, r.rate_parameter, r.rate_point, r.sample,
                str(source.dataset.feature_path(r.task, r.sample)), str(scratch), str(ctc.root), quant_rule,
                tuple(sorted(options.items())), (), r.feature_sha256) for r in records]


def reencode_problems(root: Path, records: list[ResultRecord], jobs: list[Job], workers: int) -> list[str]:
    """One line per job whose fresh bitstream differs from the bundle's (or failed to encode)."""
    context = multiprocessing.get_context("spawn")
    # one fresh process per encode: no state of an earlier encode can make two runs agree
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context, max_tasks_per_child=1) as pool:
        fresh = list(pool.map(run_job, jobs))
    problems = []
    for claimed, mine in zip(records, fresh):
        label = f"{root}/{claimed.record_path}"
        if mine.status != "ok":
            problems.append(f"{label}: re-encoding here failed: {mine.error}")
        elif mine.bitstream_sha256 != claimed.bitstream_sha256:
            problems.append(f"{label}: re-encoded here, the bitstream differs ({mine.bytes} bytes, sha256 "
                            f"{mine.bitstream_sha256[:12]}; the bundle's: {claimed.bytes} bytes, "
                            f"{claimed.bitstream_sha256[:12]})")
    return problems
