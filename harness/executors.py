"""Where jobs run. The local pool is the default; a distributed engine can
implement the same two-method interface (`run`, `close`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
import multiprocessing
import os
from typing import Protocol, TypeVar

from harness.jobs import worker_init

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs `fn` over jobs and yields results as they complete (any order)."""

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """In-process, one job at a time: no start-up cost, easiest to debug (--jobs 1)."""

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]:
        for job in jobs:
            yield fn(job)

    def close(self) -> None:
        pass


class LocalPoolExecutor:
    """A pool of fresh (spawned) worker processes on this machine."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=worker_init, initargs=(threads,))

    def run(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[R]:
        pending: set[Future] = set()
        queue = iter(jobs)
        # keep a bounded number of jobs in flight so Ctrl-C stops quickly
        for job in queue:
            pending.add(self._pool.submit(fn, job))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(self._pool.submit(fn, nxt))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def local_executor(jobs: int) -> Executor:
    return SerialExecutor() if jobs <= 1 else LocalPoolExecutor(jobs)
