"""A Dask-distributed executor behind the harness's `Executor` interface (`run`, `close`).

Used by `harness run --executor dask [--scheduler tcp://HOST:PORT]` (pip install "fcm-harness[cluster]").

    executor = DaskExecutor(workers=4)                      # private LocalCluster, 4 processes x 1 thread
    executor = DaskExecutor(scheduler="tcp://10.0.0.5:8786")  # join a running cluster
    executor = DaskExecutor(cluster=SLURMCluster(...))        # any deployed cluster object (dask-jobqueue)
    outcome = execute(request, executor=executor)             # the runner closes it

Contract with the harness
-------------------------
* A `Job` carries paths and names only; it is shipped to the worker, which runs
  `run_job` there. The worker writes the bitstream and the JSON record into the
  run directory itself (atomically: temp file + os.replace), so the run
  directory must be on a filesystem every worker sees *under the same path*.
  Relative paths in a Job are made absolute on the driver before shipping.
* The record returned to the driver (a small `ResultRecord`) is what the
  runner's progress bar counts; `results.csv` is rebuilt from the records on
  disk, one file per (task, rate point, sample), so a job that ran twice can
  never give two rows.
* Per-worker state: `harness.jobs` caches the registry, CTC and codec instances
  in module globals. A Dask worker process runs all its tasks in one
  interpreter, so a codec (or a task-head model behind it) is built once per
  worker process, not once per job. After a worker dies, its replacement builds
  it again once.

Faults
------
* Worker killed mid-job: the scheduler reschedules the tasks it was processing
  on other workers. A task involved in more than `retries` worker deaths fails
  with `KilledWorker`; the driver then writes (and yields) a *failed* record
  with that error instead of retrying forever. For a private LocalCluster the
  bound is set via the scheduler's `allowed_failures`; a joined scheduler keeps
  its own `distributed.scheduler.allowed-failures` (default 3): we only warn.
* Half-written files: a killed worker can leave `.<name>.<random>.tmp` files
  next to the job's bitstream/record. The next attempt of that job (any
  executor run, including a resumed run) removes them before starting; a job
  that finally fails has them removed by the driver.
* Exceptions inside `fn` (run_job does not raise for codec faults, only e.g. for
  an unwritable run directory) are retried `retries` times, then reported as a
  failed record.
* Driver killed / Ctrl-C: remaining futures are cancelled and the client (and a
  private cluster) closed; finished jobs are on disk, so re-running the same
  command resumes. On a shared cluster, a job already executing when the driver
  disappears still finishes and writes its (identical) files atomically.

Running on Slurm/PBS with dask-jobqueue
---------------------------------------
Either build the cluster in Python and pass it in::

    from dask_jobqueue import SLURMCluster          # or PBSCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="16GB", walltime="04:00:00",
                           job_extra_directives=["--gres=gpu:1"],   # one GPU per worker for task heads
                           job_script_prologue=["source /path/to/venv/bin/activate"])
    cluster.scale(jobs=32)
    execute(request, executor=DaskExecutor(cluster=cluster))

or start a scheduler yourself (`dask scheduler --port 8786` on the login node),
submit workers as batch jobs (`dask worker tcp://LOGIN:8786 --nworkers 1
--nthreads 1` inside each job script) and run
`harness run ... --executor dask --scheduler tcp://LOGIN:8786`. Workers need
the same Python environment (fcm-harness and the codec plugins installed) and
the data root, CTC directory and output directory mounted at the same paths.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
import dataclasses
import functools
import logging
import os
import socket
import sys
from typing import Any, TypeVar
import uuid

import dask
from distributed import Client, LocalCluster, as_completed
from distributed.scheduler import KilledWorker

from harness.executors import WorkerDied, remove_temp_files
from harness.executors import lost_job_record as failed_record

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- worker side

def _call(fn: Callable[[T], R], job: T) -> tuple[R, str]:
    """What a Dask task runs: clean up after an earlier killed attempt, run, say where."""
    remove_temp_files(job)
    return fn(job), f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- driver side

def _portable(job: Any) -> Any:
    """A Job with absolute paths, so it means the same thing in a worker's working directory."""
    from harness.jobs import Job

    if not isinstance(job, Job):
        return job
    return dataclasses.replace(job, run_dir=os.path.abspath(job.run_dir),
                               feature_path=os.path.abspath(job.feature_path) if job.feature_path else "",
                               ctc_dir=os.path.abspath(job.ctc_dir) if job.ctc_dir else "")


def lost_job_record(job: Any, exc: BaseException) -> Any:
    """Default for a job Dask gave up on: a failed ResultRecord, written like a worker would."""
    if isinstance(exc, KilledWorker):
        exc = WorkerDied(exc.allowed_failures + 1, "dask KilledWorker")
    return failed_record(job, exc)


def _say(message: str) -> None:
    """A line on the terminal that does not break a running tqdm bar."""
    try:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    except Exception:  # pragma: no cover
        print(message, file=sys.stderr)


class DaskExecutor:
    """Runs jobs as Dask tasks; yields results as they complete (any order).

    Exactly one of:
      scheduler: address of a running scheduler to join ("tcp://HOST:PORT");
      workers:   start a private LocalCluster with that many worker processes
                 (1 thread each, nanny-restarted if they die);
      cluster:   an already created cluster object (e.g. dask_jobqueue.SLURMCluster);
                 not closed by `close()` unless own_cluster=True.
    retries: how many times a job is re-run after its worker died (or after an
             exception in `fn`) before it is reported as failed.
    on_error: (job, exception) -> result for a job Dask gave up on; the default
              writes and returns a failed harness ResultRecord.
    worker_saturation: scheduler's tasks-per-thread for a private cluster. 1.0 means
              a worker only ever holds the job it is running, so a worker death
              only counts against that job (Dask's default 1.1 pre-assigns a second
              task per 1-thread worker, which would be charged too).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, retries: int = 2, *,
                 cluster: Any = None, own_cluster: bool = False,
                 on_error: Callable[[Any, BaseException], Any] = lost_job_record,
                 worker_saturation: float = 1.0, dashboard: bool = False, verbose: bool = True,
                 silence_logs: int = logging.ERROR) -> None:
        if sum(x is not None for x in (scheduler, workers, cluster)) != 1:
            raise ValueError("DaskExecutor: give exactly one of scheduler=, workers= or cluster=")
        if retries < 0:
            raise ValueError("DaskExecutor: retries must be >= 0")
        self.retries = retries
        self.on_error = on_error
        self.verbose = verbose
        self._own_cluster = own_cluster
        self._closed = False
        self._events: deque = deque()
        self.stats = {"submitted": 0, "completed": 0, "failed_by_dask": 0, "workers_lost": 0,
                      "rescheduled": 0}
        # of the latest run(): job index -> "host:pid" of the attempt that finished it, and the
        # indices of jobs that were on a worker when it died
        self.ran_on: dict[int, str] = {}
        self.rescheduled: set[int] = set()
        self.cluster = cluster
        if workers is not None:
            if workers < 1:
                raise ValueError("DaskExecutor: workers must be >= 1")
            with dask.config.set({"distributed.scheduler.worker-saturation": worker_saturation}):
                # the scheduler's HTTP server (metrics, and the dashboard if wanted) always starts;
                # a random port avoids "Port 8787 is already in use" when several clusters run
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            scheduler_kwargs={"allowed_failures": retries,
                                                              "dashboard": dashboard, "dashboard_address": ":0"},
                                            silence_logs=silence_logs)
            self._own_cluster = True
        try:
            self.client = Client(self.cluster if self.cluster is not None else scheduler,
                                 set_as_default=False)
        except BaseException:
            self._close_cluster()
            raise
        self.client.subscribe_topic("all", self._on_event)
        if scheduler is not None:
            self._check_allowed_failures()
        if verbose and dashboard and self.client.dashboard_link:
            _say(f"dask dashboard: {self.client.dashboard_link}")

    # ---------------------------------------------------------------- interface

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]:
        jobs = [_portable(j) for j in jobs]
        if not jobs:
            return
        self.ran_on, self.rescheduled = {}, set()
        token = uuid.uuid4().hex[:8]
        name = getattr(fn, "__name__", "job").replace("_", "-")
        keys = [f"{name}-{token}-{i}" for i in range(len(jobs))]
        index = {k: i for i, k in enumerate(keys)}
        futures = self.client.map(functools.partial(_call, fn), jobs, key=keys,
                                  retries=self.retries, pure=False)
        self.stats["submitted"] += len(futures)
        remaining = {f.key: f for f in futures}
        try:
            # with_results: results are fetched concurrently on the event loop, not one
            # blocking round trip per job; the loop must be given (our client is not the default)
            for future, outcome in as_completed(futures, with_results=True, raise_errors=False,
                                                loop=self.client.loop):
                i = index[future.key]
                remaining.pop(future.key, None)
                self._drain_events(index)
                if future.status == "finished":
                    result, self.ran_on[i] = outcome
                else:
                    result = self._gave_up(jobs[i], future, outcome)
                future.release()
                self.stats["completed"] += 1
                yield result
        finally:  # normal end, error, Ctrl-C, or the consumer stopped early
            if remaining:
                try:
                    self.client.cancel(list(remaining.values()), force=True)
                except Exception:
                    pass
            self._drain_events(index)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # unsubscribe first, or the scheduler logs a CRITICAL "Closed comm" trying to send
            # this client its own remove-client event
            self.client.unsubscribe_topic("all")
        except Exception:
            pass
        try:
            self.client.close(timeout=10)
        except Exception:
            pass
        finally:
            self._close_cluster()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _close_cluster(self) -> None:
        if self._own_cluster and self.cluster is not None:
            try:
                self.cluster.close(timeout=10)
            except Exception:
                pass

    def _gave_up(self, job: Any, future: Any, exc: Any) -> Any:
        if isinstance(exc, tuple):  # as_completed(raise_errors=False) gives (type, exception, traceback)
            exc = exc[1]
        if future.status == "cancelled" or not isinstance(exc, Exception):
            raise RuntimeError(f"dask task {future.key} was cancelled (scheduler gone or run interrupted)")
        self.stats["failed_by_dask"] += 1
        if self.verbose:
            _say(f"dask: job {future.key} given up: {type(exc).__name__}: {exc}")
        return self.on_error(job, exc)

    def _on_event(self, event: Any) -> None:  # runs in the client's event-loop thread: keep it short
        _, msg = event
        if isinstance(msg, dict) and msg.get("action") == "remove-worker" and not msg.get("expected"):
            self._events.append(msg)

    def _drain_events(self, index: dict[str, int]) -> None:
        while self._events:
            msg = self._events.popleft()
            ours = [index[k] for k in msg.get("processing-tasks", ()) if k in index]
            self.stats["workers_lost"] += 1
            self.stats["rescheduled"] += len(ours)
            self.rescheduled.update(ours)
            if self.verbose:
                _say(f"dask: lost worker {msg.get('worker', '?')}; "
                     f"{len(ours)} job(s) it was running rescheduled (max {self.retries} retries)")

    def _check_allowed_failures(self) -> None:
        try:
            allowed = self.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        except Exception:
            return
        if allowed != self.retries and self.verbose:
            _say(f"dask: the scheduler allows {allowed} worker deaths per task "
                 f"(distributed.scheduler.allowed-failures), not {self.retries}; set it where the scheduler starts")


def make_executor(kind: str, jobs: int | None = None, scheduler: str | None = None, retries: int = 2) -> Any:
    """What `--executor local|dask [--scheduler ADDR] [--jobs N]` builds."""
    from harness.executors import local_executor

    if kind == "local":
        if scheduler:
            raise ValueError("--scheduler needs --executor dask")
        return local_executor(jobs or os.cpu_count() or 1, retries)
    if kind == "dask":
        if scheduler:
            return DaskExecutor(scheduler=scheduler, retries=retries)
        return DaskExecutor(workers=jobs or os.cpu_count() or 1, retries=retries)
    raise ValueError(f"unknown executor '{kind}' (local, dask)")
