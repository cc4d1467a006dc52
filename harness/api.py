"""The library calls behind the `harness` command, for notebooks and scripts.

    from harness import api
    done = api.run(api.RunRequest(codec="zlib", dataset="demo", limit=2))
    done.metrics                          # the task metrics table, or None
    api.compare("paper-vtm", str(done.outcome.run_dir))

Each call takes typed arguments and returns data; none prints. The CLI (`harness/cli.py`) only
parses options, calls these and formats what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError, MissingHeadFilesError
from harness.evaluate import EvaluationRequest, evaluate_run
from harness.executors import Executor
from harness.runner import RunOutcome, RunRequest, execute

__all__ = ["EvaluationRequest", "RunDone", "RunRequest", "evaluate", "open_executor", "run"]


def open_executor(kind: str = "local", jobs: int | None = None, scheduler: str | None = None) -> Executor | None:
    """None for the local process pool (the runner makes it), or a Dask executor; the caller closes it."""
    if kind == "local" and not scheduler:
        return None
    if kind != "dask":
        raise HarnessError(f"unknown executor '{kind}'; available: local, dask (--scheduler needs dask)")
    try:
        from harness.dask_executor import make_executor
    except ImportError:
        raise HarnessError("the dask executor needs: pip install 'fcm-harness[cluster]'") from None
    return make_executor("dask", jobs, scheduler)


@dataclass
class RunDone:
    outcome: RunOutcome
    metrics: pd.DataFrame | None = None  # None: not evaluated (asked not to, nothing coded, or no weights)
    skipped_evaluation: str = ""  # why the metrics are missing when the head weights are

    def failure_message(self) -> str:
        """'' when every job succeeded, else one line on the first failure."""
        if not self.outcome.failures:
            return ""
        first = self.outcome.failures[0]
        return (f"{len(self.outcome.failures)} job(s) failed; first: {first.task}/{first.sample} "
                f"{first.rate_parameter}{first.rate_point:g}: {first.error} "
                f"(see {self.outcome.run_dir / 'results.csv'})")


def evaluate(request: EvaluationRequest) -> pd.DataFrame:
    """Task metrics of a run directory (writes metrics.csv; cached predictions make it resumable)."""
    return evaluate_run(request)


def run(request: RunRequest, executor: str = "local", scheduler: str | None = None, evaluate_tasks: bool = True,
        heads: str = "auto", weights: Path | None = None) -> RunDone:
    """Code every job of the request (resuming), then evaluate the tasks.

    With the automatic head choice and official weights missing, coding is kept and the metrics
    are left for later (`skipped_evaluation` says why); any other evaluation error is raised."""
    pool = open_executor(executor, request.jobs, scheduler)
    try:
        outcome = execute(request, executor=pool)
    finally:
        if pool is not None:
            pool.close()
    done = RunDone(outcome)
    if evaluate_tasks and outcome.table is not None and (outcome.table.status == "ok").any():
        try:
            done.metrics = evaluate_run(EvaluationRequest(outcome.run_dir, heads, weights, progress=request.progress))
        except MissingHeadFilesError as exc:
            if heads != "auto":
                raise
            done.skipped_evaluation = str(exc)
    return done
