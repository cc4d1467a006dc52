"""The library calls behind the `harness` command, for notebooks and scripts.

    from harness import api
    done = api.run(api.RunRequest(codec="zlib", dataset="demo", limit=2))
    done.metrics                          # the task metrics table, or None
    api.compare("paper-vtm", str(done.outcome.run_dir))

Each call takes typed arguments and returns data; none prints. The CLI (`harness/cli.py`) only
parses options, calls these and formats what they return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.ctc import CTC
from harness.errors import HarnessError, MissingHeadFilesError
from harness.evaluate import EvaluationRequest, evaluate_run
from harness.executors import Executor
from harness.runner import RunOutcome, RunRequest, execute

__all__ = ["Comparison", "EvaluationRequest", "RunDone", "RunRequest", "TrainRequest", "compare", "evaluate",
           "open_executor", "run", "run_ctc", "train"]


def run_ctc(run_dir: Path | None, ctc_dir: Path | None = None) -> CTC:
    """The CTC a run was coded under (`ctc_dir`, if given, must match it); without a run, `ctc_dir` or the paper's."""
    from harness.ctc import ctc_of_run, load_ctc
    from harness.provenance import load_run_meta

    if run_dir is None:
        return load_ctc(ctc_dir)
    return ctc_of_run(load_run_meta(run_dir), run_dir, ctc_dir)


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


@dataclass
class TrainRequest:
    codec: str
    task: str
    features: Path | None = None  # else the dataset's <task>/feature_train/train
    dataset: str | None = None
    data_root: Path | None = None
    rate_points: list[float] | None = None  # None: the codec's (or its family's) for the task
    out: Path | None = None  # default checkpoints/<task>
    overrides: dict[str, object] | None = None  # epochs, batch, crop, steps_per_epoch, device, codec settings
    ctc_dir: Path | None = None


def training_features(request: TrainRequest) -> tuple[CTC, Path]:
    """The CTC and the folder of training features a training request means."""
    from harness.ctc import ctc_with_task
    from harness.registry import default_registry
    from harness.sources import resolve_ctc, resolve_dataset

    if (request.features is None) == (not (request.dataset or request.data_root)):
        raise HarnessError("give the training features either as --features DIR or as --dataset / --data-root "
                           "(the dataset's <task>/feature_train/train folder, the official layout)")
    if request.features is not None:
        return ctc_with_task(request.task, request.ctc_dir), request.features
    registry = default_registry()
    ctc = resolve_ctc(request.ctc_dir, request.dataset, registry)
    ctc.task(request.task)  # an unknown task is named before a built-in dataset is made
    source = resolve_dataset(request.dataset, request.data_root, ctc, registry)
    features = source.dataset.training_dir(request.task)
    if not features.is_dir():
        raise HarnessError(f"dataset '{source.label}' has no training features for {request.task}: expected .npy "
                           f"files in {features}; give --features DIR")
    return ctc, features


def train(request: TrainRequest, log: Callable[[str], None] = print) -> list[Path]:
    """Train the codec's model for each rate point (resuming); returns the checkpoints."""
    from harness.registry import default_registry
    from harness.runner import codec_rate_points
    from harness.training import train_codec

    ctc, features = training_features(request)
    spec = default_registry().codec(request.codec).spec
    missing = spec.missing(request.overrides or {})
    if missing:
        raise HarnessError(f"codec '{spec.name}' cannot run here: {missing}")
    # a CTC lists rate points from the highest rate down; training goes from the lowest up, so a
    # warm-started recipe (each model built on the one below) finds every parent already trained
    points = request.rate_points or list(reversed(codec_rate_points(spec, ctc, request.task)))
    out = request.out or Path("checkpoints") / request.task
    return [Path(train_codec(spec, ctc, request.task, point, features, out, request.overrides or {}, log=log)
                 ["checkpoint"]) for point in points]


def compare(anchor: str, test: str, on: str = "metric", method: str = "pchip", policy: str = "nan",
            ctc_dir: Path | None = None, bootstrap: int | None = None, seed: int | None = None) -> Comparison:
    """BD-rate and BD-metric of `test` against `anchor` (anchor names or run directories), per task, with
    bootstrap intervals where the test has per-sample records (harness.comparison)."""
    from harness import comparison
    from harness.curves import compare as compare_curves, resolve_curve

    if method not in ("pchip", "akima", "cubic") or policy not in ("nan", "drop"):
        raise HarnessError(f"--method must be pchip, akima or cubic and --policy nan or drop; got {method}, {policy}")
    runs = [Path(s) for s in (test, anchor) if (Path(s) / "run.json").is_file()]
    ctc = run_ctc(runs[0] if runs else None, ctc_dir)
    a, b = resolve_curve(anchor, ctc, on), resolve_curve(test, ctc, on)
    rows = compare_curves(a, b, on=on, method=method, policy=policy)
    result = comparison.build(b, [a], ctc, ons=(on,), method=method, policy=policy,
                              bootstrap=comparison.BOOTSTRAP_COUNT if bootstrap is None else bootstrap,
                              seed=comparison.BOOTSTRAP_SEED if seed is None else seed)
    return Comparison(a, b, rows, on, method, policy, result)


@dataclass
class Comparison:
    anchor: Any  # harness.curves.Curve
    test: Any
    rows: list  # harness.curves.TaskComparison per task: the raw BD results
    on: str
    method: str
    policy: str
    result: Any = None  # harness.comparison.ComparisonSet: what every page shows (withheld, intervals)

    def record(self) -> dict:
        """The comparison as strict-JSON data (null, never NaN), with the files the curves came from."""
        from harness.comparison import anchor_record
        record = anchor_record(self.result, self.result.anchors[0], self.on)
        record["anchor_file"] = str(self.anchor.file) if self.anchor.file else None
        record["test_file"] = str(self.test.file) if self.test.file else None
        return record
