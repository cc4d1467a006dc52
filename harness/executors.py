"""Where jobs run. The local pool is the default; a distributed engine can
implement the same two-method interface (`run`, `close`).

Faults shared by every executor: a worker process that dies mid-job (killed,
out of memory, a crash in native code) can leave `.<name>.<random>.tmp` files
beside the job's bitstream and record; they are removed before the job is
redone, and a job redone `retries` times without success gets a failed record
saying why (`lost_job_record`), so a run always ends with one row per job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing
import os
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.jobs import Job, worker_init
from harness.results import ResultRecord, job_paths, write_record

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs `fn` over jobs and yields results as they complete (any order)."""

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


class WorkerDied(Exception):
    """The worker process running a job died every time the job was tried."""

    def __init__(self, deaths: int, detail: str = "") -> None:
        super().__init__(f"the worker process died while running this job {deaths} times "
                         f"({detail or 'killed, out of memory or a crash in native code'}); not retried further")
        self.deaths = deaths


def job_temp_files(job: Any) -> list[Path]:
    """Leftover temp files of this job's atomic writes (from a worker killed mid-write)."""
    if not isinstance(job, Job):
        return []
    paths = job_paths(Path(job.run_dir), job.task, job.rate_label, job.sample)
    found = []
    for target in (paths.bitstream, paths.record):
        prefix = f".{target.name}."
        try:
            names = os.listdir(target.parent)
        except OSError:
            continue
        found += [target.parent / n for n in names if n.startswith(prefix) and n.endswith(".tmp")]
    return found


def remove_temp_files(job: Any) -> None:
    for path in job_temp_files(job):
        try:
            path.unlink()
        except OSError:
            pass


def lost_job_record(job: Any, exc: BaseException) -> Any:
    """A job an executor gave up on: a failed ResultRecord with the reason, written like a worker
    would. Anything but a harness `Job` has no record: the exception is raised."""
    if not isinstance(job, Job):
        raise exc
    error = f"worker: {exc}" if isinstance(exc, WorkerDied) else f"worker: {type(exc).__name__}: {exc}"
    record = ResultRecord(job.codec, "", job.task, job.rate_parameter, job.rate_point, job.sample,
                          status="failed", error=error.replace("\n", " | ")[:2000])
    remove_temp_files(job)
    write_record(job_paths(Path(job.run_dir), job.task, job.rate_label, job.sample).record, record)
    return record


class SerialExecutor:
    """In-process, one job at a time: no start-up cost, easiest to debug (--jobs 1)."""

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]:
        for job in jobs:
            yield fn(job)

    def close(self) -> None:
        pass


class LocalPoolExecutor:
    """A pool of fresh (spawned) worker processes on this machine.

    A dead worker breaks the whole pool and every job in flight with it, and
    which job killed it is unknown. So the pool is rebuilt and the jobs that
    were in flight are redone one at a time: an innocent job then finishes,
    and a job that kills its worker again is charged exactly. A job is tried
    at most 1 + `retries` times (as with the Dask executor), then `on_error`
    gives its result (by default a failed record saying why).
    """

    def __init__(self, workers: int, retries: int = 2,
                 on_error: Callable[[Any, BaseException], Any] = lost_job_record) -> None:
        if retries < 0:
            raise ValueError("LocalPoolExecutor: retries must be >= 0")
        self.workers, self.retries, self.on_error = workers, retries, on_error
        self.stats = {"workers_lost": 0, "redone": 0, "given_up": 0}
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_init, initargs=(threads,))

    def _restart(self) -> None:
        self.stats["workers_lost"] += 1
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new_pool()

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]:
        queue = deque(jobs)
        in_flight: dict[Future, T] = {}
        while queue or in_flight:
            # keep a bounded number of jobs in flight so Ctrl-C stops quickly
            while queue and len(in_flight) < 2 * self.workers:
                job = queue.popleft()
                in_flight[self._pool.submit(fn, job)] = job
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                wait(in_flight)  # a broken pool fails every future it holds, at once
                done = set(in_flight)
            suspects = []
            for future in done:
                job = in_flight.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    suspects.append(job)
                else:
                    yield future.result()
            if suspects:
                self._restart()
                for job in suspects:
                    yield self._run_alone(fn, job)

    def _run_alone(self, fn: Callable[[T], R], job: T) -> R:
        """Redo a job that was in flight when a worker died, alone, so a death is its own."""
        deaths = 1  # the pool's death, charged to each job then in flight: maybe not its own,
        while deaths <= max(self.retries, 1):  # so each gets one try alone even with retries=0
            remove_temp_files(job)
            self.stats["redone"] += 1
            future = self._pool.submit(fn, job)
            try:
                return future.result()
            except BrokenProcessPool:
                deaths += 1
                self._restart()
        self.stats["given_up"] += 1
        return self.on_error(job, WorkerDied(deaths))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def local_executor(jobs: int, retries: int = 2) -> Executor:
    return SerialExecutor() if jobs <= 1 else LocalPoolExecutor(jobs, retries)
