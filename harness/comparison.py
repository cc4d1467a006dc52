"""One comparison of a test curve against anchors, for every page that shows BD-rates.

`harness compare`, `harness report`, the result sheet (sheet.csv/.xlsx) and a bundle's
bd-rates.json all render the `ComparisonSet` built here, so they cannot disagree. Per anchor
and task, and as the mean over tasks, on each axis asked for:

* ``metric``: the task metric (higher or lower is better, as the CTC says);
* ``psnr``: -10*log10(feature MSE) in dB, the JVET/MPEG way of taking BD-rate on distortion
  (the default distortion axis). A PSNR's peak term adds the same constant to every point of
  both curves; BD-rate at equal quality does not change under that shift, so no peak is needed;
* ``mse``: linear feature MSE (lower is better), only when asked for by name.

A BD-rate whose two curves overlap on the quality axis less than the CTC's ``[bd] min_overlap``
(common interval / union, see harness.bdrate) is *withheld*: no number, the reason instead.

Intervals: a percentile bootstrap over samples. The test run's samples of a task are drawn with
replacement (the same draw at every rate point: a sample is coded at all of them), each rate
point's BPFP and MSE are the means over the drawn samples, and the BD-rate is recomputed; the
interval holds the middle `level` of the resampled BD-rates. The anchors are fixed sheets of
per-rate-point means, so only the test side is resampled: the interval says how much the number
depends on which samples the test set holds, not how the anchor would vary. An interval is
withheld, with the reason, where there is nothing per sample to resample: a test curve that is an
anchor sheet, and the task metric, which the head scores over the whole set of a rate point
(metrics.csv has one value per rate point).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any
import zlib

import numpy as np
import pandas as pd

from harness.bdrate import BDResult, bd_metric, bd_rate
from harness.ctc import CTC
from harness.curves import Curve, axis_values, check_on, load_run_curve, psnr_db, resolve_curve
from harness.errors import HarnessError
from harness.results import read_table

BOOTSTRAP_COUNT = 200  # resamples per BD-rate interval
BOOTSTRAP_SEED = 0
LEVEL = 0.95
MIN_RESAMPLES = 0.9  # an interval needs this share of resamples to give a BD-rate

PEAK_NOTE = ("psnr = -10*log10(feature MSE) in dB; a peak term 10*log10(peak^2) would shift every point "
             "of both curves alike, which cancels in BD-rate, so no peak is needed")
METRIC_INTERVAL = ("the task metric is scored by the head over all samples of a rate point at once "
                   "(metrics.csv holds one value per rate point), so there are no per-sample values to resample")
SHEET_INTERVAL = "the test curve is an anchor sheet: means per rate point, no per-sample records to resample"
AXIS = {"metric": "metric", "psnr": "PSNR (dB)", "mse": "feature MSE"}


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a BD-rate in percent, or why there is none (low/high None)."""

    low: float | None
    high: float | None
    level: float
    count: int  # resamples drawn
    used: int  # resamples that gave a BD-rate
    seed: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self) -> str:
        return f"[{self.low:+.2f}, {self.high:+.2f}] %" if self.ok else "none"

    def record(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "level": self.level, "count": self.count, "used": self.used,
                "seed": self.seed, "reason": self.reason or None}


@dataclass(frozen=True)
class BD:
    """One BD-rate (a task's or the mean) on one axis: a number, or None with the reason."""

    on: str
    value: float | None  # percent, negative = the test needs fewer bits
    reason: str  # why value is None ("" when it is a number)
    withheld: bool  # a number was computed but the curves overlap less than the CTC allows
    overlap: float | None  # common / union on the quality axis (tasks only)
    bd_metric: float | None  # mean quality difference at equal rate, in the axis' units (tasks only)
    interval: Interval
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class TaskResult:
    task: str
    bd: tuple[BD, ...]  # one per axis, in ComparisonSet.ons order
    enc_time_ratio: float | None
    dec_time_ratio: float | None
    time_points: int
    anchor_points: int
    test_points: int

    def on(self, on: str) -> BD:
        return next(b for b in self.bd if b.on == on)


@dataclass(frozen=True)
class AnchorResult:
    anchor: str
    anchor_source: str
    anchor_file: str | None  # the sheet's file name (no folder: no paths of this machine)
    tasks: tuple[TaskResult, ...]
    means: tuple[BD, ...]  # one per axis
    mean_notes: tuple[str, ...]  # per axis: "mean over 2 of 2 tasks", in `means` order
    enc_time_ratio: float | None  # geometric mean over tasks
    dec_time_ratio: float | None
    curve: Curve = field(compare=False, repr=False)

    def mean(self, on: str) -> BD:
        return next(b for b in self.means if b.on == on)

    def mean_note(self, on: str) -> str:
        return next(n for b, n in zip(self.means, self.mean_notes) if b.on == on)


@dataclass(frozen=True)
class ComparisonSet:
    test: str
    test_source: str
    ons: tuple[str, ...]
    method: str
    policy: str
    min_overlap: float
    bootstrap: int
    seed: int
    level: float
    anchors: tuple[AnchorResult, ...]
    notes: tuple[str, ...]
    test_curve: Curve = field(compare=False, repr=False)


# ---------------------------------------------------------------- building it


def compare_run(run_dir: Path, ctc: CTC, codec: str | None = None, anchors: Sequence[str] | None = None,
                ons: Sequence[str] | None = None, **options: Any) -> ComparisonSet:
    """A run or bundle directory against anchors (default: the CTC's), on the task metric (when the run
    is evaluated) and PSNR unless `ons` says otherwise; `options` as for `build`."""
    test = load_run_curve(Path(run_dir), ctc, on="mse")
    if codec:
        test.name = codec
    if ons is None:
        ons = (("metric",) if has_metric(test) else ()) + ("psnr",)
    curves = [resolve_curve(name, ctc, on="mse") for name in (ctc.anchors if anchors is None else anchors)]
    return build(test, curves, ctc, ons=ons, **options)


def has_metric(curve: Curve) -> bool:
    return "metric" in curve.points and not curve.points.metric.isna().all()


def build(test: Curve, anchors: Sequence[Curve], ctc: CTC, *, ons: Sequence[str] = ("metric", "psnr"),
          method: str = "pchip", policy: str = "nan", bootstrap: int = BOOTSTRAP_COUNT, seed: int = BOOTSTRAP_SEED,
          level: float = LEVEL, min_overlap: float | None = None) -> ComparisonSet:
    """The comparison of `test` against every anchor that shares a task with it (the others are left out)."""
    for on in ons:
        check_on(on)
    if bootstrap < 0 or not 0 < level < 1:
        raise HarnessError(f"--bootstrap must be 0 or more and the level in (0, 1), got {bootstrap}, {level}")
    threshold = ctc.bd_min_overlap if min_overlap is None else float(min_overlap)
    samples = _sample_values(test) if bootstrap else None
    draws = {task: _draws(samples[task], bootstrap, seed, task) for task in samples} if samples else {}
    settings = _Settings(method, policy, threshold, bootstrap, seed, level)
    results = tuple(_against(anchor, test, ons, settings, samples, draws)
                    for anchor in anchors if set(anchor.tasks) & set(test.tasks))
    notes = [f"a BD-rate whose curves overlap less than {threshold:.0%} on the quality axis (the CTC's "
             "[bd] min_overlap) is withheld"]
    if "psnr" in ons:
        notes.append(PEAK_NOTE)
    if bootstrap:
        notes.append(f"intervals: {level:.0%} percentile bootstrap, {bootstrap} resamples (seed {seed}) of the "
                     "test's samples per task; the anchors are fixed sheets, only the test side is resampled")
    return ComparisonSet(test.name, test.source, tuple(ons), method, policy, threshold, bootstrap, seed, level,
                         results, tuple(notes), test)


@dataclass(frozen=True)
class _Settings:
    method: str
    policy: str
    min_overlap: float
    bootstrap: int
    seed: int
    level: float


def _against(anchor: Curve, test: Curve, ons: Sequence[str], settings: _Settings,
             samples: dict[str, dict[str, np.ndarray]] | None, draws: dict[str, np.ndarray]) -> AnchorResult:
    tasks = sorted(set(anchor.tasks) & set(test.tasks))
    per_task: dict[str, list[BD]] = {task: [] for task in tasks}
    resampled: dict[tuple[str, str], list[float | None] | None] = {}
    for on in ons:
        for task in tasks:
            bd, values = _task_bd(anchor.task(task), test.task(task), on, settings,
                                  None if samples is None else samples.get(task), draws.get(task))
            per_task[task].append(bd)
            resampled[(on, task)] = values
    rows = []
    logs: dict[str, list[float]] = {"enc_s": [], "dec_s": []}
    for task in tasks:
        a, t = anchor.task(task), test.task(task)
        enc, enc_points = time_ratio(a, t, "enc_s")
        dec, dec_points = time_ratio(a, t, "dec_s")
        for column, ratio in (("enc_s", enc), ("dec_s", dec)):
            if ratio is not None:
                logs[column].append(math.log(ratio))
        rows.append(TaskResult(task, tuple(per_task[task]), enc, dec, max(enc_points, dec_points), len(a), len(t)))
    means, notes = [], []
    for index, on in enumerate(ons):
        mean, note = _mean([r.bd[index] for r in rows], [r.task for r in rows], on,
                           [resampled[(on, r.task)] for r in rows], settings)
        means.append(mean)
        notes.append(note)
    geo = {c: math.exp(sum(v) / len(v)) if v else None for c, v in logs.items()}
    file = anchor.file.name if anchor.file else None
    return AnchorResult(anchor.name, anchor.source, file, tuple(rows), tuple(means), tuple(notes),
                        geo["enc_s"], geo["dec_s"], anchor)


def _task_bd(a: pd.DataFrame, t: pd.DataFrame, on: str, settings: _Settings,
             samples: dict[str, np.ndarray] | None, draws: np.ndarray | None) -> tuple[BD, list[float | None] | None]:
    ra, ya, higher = axis_values(a, on)
    rt, yt, _ = axis_values(t, on)
    kwargs = {"higher_is_better": higher, "method": settings.method, "policy": settings.policy}
    rate, metric = bd_rate(ra, ya, rt, yt, **kwargs), bd_metric(ra, ya, rt, yt, **kwargs)
    value, reason, withheld = _judge(rate, settings.min_overlap, on)
    values = None
    if value is None:
        interval = _none(settings, "no BD-rate to give an interval for")
    elif not settings.bootstrap:
        interval = _none(settings, "bootstrap off (0 resamples)")
    elif samples is None or draws is None:
        interval = _none(settings, SHEET_INTERVAL)
    elif on == "metric":
        interval = _none(settings, METRIC_INTERVAL)
    else:
        values = _resampled(ra, ya, samples, draws, on, kwargs, settings.min_overlap)
        interval = _interval(values, settings)
    metric_value = float(metric.value) if metric.ok else None
    overlap = float(rate.overlap) if math.isfinite(rate.overlap) else None
    notes = tuple(_relabel(n, on) for n in rate.notes)
    return BD(on, value, _relabel(reason, on), withheld, overlap, metric_value, interval, notes), values


def _relabel(text: str, on: str) -> str:
    """harness.bdrate calls the quality axis 'metric'; on a distortion axis, say which one."""
    if on == "metric":
        return text
    return text.replace("the metric axis", f"the {AXIS[on]} axis").replace("(rate, metric)", f"(rate, {on})")


def _judge(rate: BDResult, min_overlap: float, on: str) -> tuple[float | None, str, bool]:
    """(value, reason, withheld): a BD-rate below the CTC's overlap is withheld, never shown."""
    if not rate.ok:
        return None, rate.reason, False
    if rate.overlap < min_overlap:
        return None, (f"withheld: the curves overlap {rate.overlap:.1%} on the {AXIS[on]} axis, below the CTC's "
                      f"minimum {min_overlap:.0%} ([bd] min_overlap)"), True
    return float(rate.value), "", False


def _none(settings: _Settings, reason: str) -> Interval:
    return Interval(None, None, settings.level, settings.bootstrap, 0, settings.seed, reason)


def _resampled(ra: np.ndarray, ya: np.ndarray, samples: dict[str, np.ndarray], draws: np.ndarray, on: str,
               kwargs: dict[str, Any], min_overlap: float) -> list[float | None]:
    """The BD-rate of each resample of the test's samples (None where it gives none or is withheld)."""
    with np.errstate(all="ignore"):  # a rate point none of whose samples were drawn: NaN, dropped by bd_rate
        bpfp = np.nanmean(samples["bpfp"][:, draws], axis=2)  # (rate points, resamples)
        mse = np.nanmean(samples["mse"][:, draws], axis=2)
    out: list[float | None] = []
    for b in range(draws.shape[0]):
        keep = mse[:, b] > 0
        y = psnr_db(mse[keep, b]) if on == "psnr" else mse[keep, b]
        result = bd_rate(ra, ya, bpfp[keep, b], y, **kwargs)
        out.append(float(result.value) if result.ok and result.overlap >= min_overlap else None)
    return out


def _interval(values: list[float | None], settings: _Settings) -> Interval:
    finite = np.array([v for v in values if v is not None], dtype=float)
    if len(finite) < MIN_RESAMPLES * len(values):
        return Interval(None, None, settings.level, len(values), len(finite), settings.seed,
                        f"only {len(finite)} of {len(values)} resamples gave a BD-rate (the rest broke the curve "
                        f"or fell below the overlap minimum)")
    tail = 100 * (1 - settings.level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high), settings.level, len(values), len(finite), settings.seed)


def _mean(bds: list[BD], tasks: list[str], on: str, resampled: list[list[float | None] | None],
          settings: _Settings) -> tuple[BD, str]:
    """The mean BD-rate over the tasks that have one (withheld ones left out, and named)."""
    used = [i for i, b in enumerate(bds) if b.ok]
    missing = [tasks[i] + (" withheld" if bds[i].withheld else "") for i in range(len(bds)) if i not in used]
    if not used:
        note = f"no task has a BD-rate ({', '.join(missing)})"
        return BD(on, None, note, False, None, None, _none(settings, "no BD-rate to give an interval for")), note
    note = f"mean over {len(used)} of {len(bds)} tasks" + (f" (without {', '.join(missing)})" if missing else "")
    value = sum(bds[i].value for i in used) / len(used)  # type: ignore[misc]
    lacking = [i for i in used if resampled[i] is None]
    if lacking:
        first = bds[lacking[0]].interval
        interval = _none(settings, f"{tasks[lacking[0]]}: {first.reason}")
    else:
        # resample b of every task used, averaged: the tasks' draws are independent
        per = [[resampled[i][b] for i in used] for b in range(settings.bootstrap)]  # type: ignore[index]
        means = [sum(v) / len(v) if all(x is not None for x in v) else None for v in per]  # type: ignore[misc]
        interval = _interval(means, settings)
    return BD(on, value, "", False, None, None, interval), note


# ---------------------------------------------------------------- per-sample values of a run


def _sample_values(curve: Curve) -> dict[str, dict[str, np.ndarray]] | None:
    """Per task: BPFP and MSE as (rate points x samples) arrays (NaN where a job is missing), from the
    records of a run or bundle directory; None for an anchor sheet."""
    folder = curve.file
    if folder is None or not (Path(folder) / "run.json").is_file():
        return None
    table = read_table(Path(folder))
    ok = table[table.status == "ok"]
    out = {}
    for task, rows in ok.groupby("task"):
        values = {}
        for column in ("bpfp", "mse"):
            values[column] = rows.pivot(index="rate_point", columns="sample", values=column).to_numpy(float)
        out[str(task)] = values
    return out


def _draws(values: dict[str, np.ndarray], count: int, seed: int, task: str) -> np.ndarray:
    """(count, samples) indices drawn with replacement; seeded per task, so a task's draws do not
    depend on which other tasks the run has."""
    n = values["bpfp"].shape[1]
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    return rng.integers(0, n, size=(count, n))


# ---------------------------------------------------------------- shared pieces of the pages


def time_ratio(anchor: pd.DataFrame, test: pd.DataFrame, column: str) -> tuple[float | None, int]:
    """Geometric mean over matched rate points (by rate_index) of test/anchor time, and how many matched."""
    if column not in anchor or column not in test:
        return None, 0
    a = anchor.set_index("rate_index")[column]
    t = test.set_index("rate_index")[column]
    logs = [math.log(t[i] / a[i]) for i in sorted(set(a.index) & set(t.index))
            if finite(a[i]) and finite(t[i]) and a[i] > 0 and t[i] > 0]
    return (math.exp(sum(logs) / len(logs)), len(logs)) if logs else (None, 0)


def finite(value: object) -> float | None:
    """`value` as a finite float, or None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def anchor_record(cs: ComparisonSet, result: AnchorResult, on: str) -> dict[str, Any]:
    """One anchor on one axis as strict-JSON data (null, never NaN): `harness compare --format json`
    and each entry of bd-rates.json."""
    tasks = {}
    for row in result.tasks:
        bd = row.on(on)
        tasks[row.task] = {"bd_rate_percent": bd.value, "reason": bd.reason or None, "withheld": bd.withheld,
                           "bd_metric": bd.bd_metric, "overlap": bd.overlap, "interval": bd.interval.record(),
                           "notes": list(bd.notes), "enc_time_ratio": row.enc_time_ratio,
                           "dec_time_ratio": row.dec_time_ratio}
    mean = result.mean(on)
    return {"anchor": result.anchor, "test": cs.test, "on": on, "method": cs.method, "policy": cs.policy,
            "min_overlap": cs.min_overlap, "anchor_source": result.anchor_source, "test_source": cs.test_source,
            "tasks": tasks, "mean_bd_rate_percent": mean.value, "mean_note": result.mean_note(on),
            "mean_interval": mean.interval.record(), "enc_time_ratio": result.enc_time_ratio,
            "dec_time_ratio": result.dec_time_ratio, "notes": list(cs.notes)}


def rate_text(bd: BD) -> str:
    """'+12.34 %', or 'withheld' / 'n/a' (the reason goes beside it)."""
    if bd.value is None:
        return "withheld" if bd.withheld else "n/a"
    return f"{bd.value:+.2f} %"


def table_lines(cs: ComparisonSet, on: str) -> list[str]:
    """`harness compare`'s table: per task and the mean against each anchor, then the notes and why an
    interval is missing."""
    lines = []
    for against in cs.anchors:
        lines.append(f"BD of {cs.test} against {against.anchor} on {on} ({cs.method}, non-monotonic policy "
                     f"'{cs.policy}')")
        lines.append(f"{'task':5} {'BD-rate':>10} {f'{cs.level:.0%} interval':>18} {'BD-metric':>10} {'overlap':>8}  note")
        for row in against.tasks:
            bd = row.on(on)
            metric = "n/a" if bd.bd_metric is None else f"{bd.bd_metric:+.4g}"
            overlap = "" if bd.overlap is None else f"{bd.overlap:.2f}"
            note = bd.reason or "; ".join(n for n in bd.notes if "warning" not in n)[:120]
            lines.append(f"{row.task:5} {rate_text(bd):>10} {interval_text(bd):>18} {metric:>10} {overlap:>8}  {note}")
        mean = against.mean(on)
        lines.append(f"mean  {rate_text(mean):>10} {interval_text(mean):>18}   ({against.mean_note(on)})")
        missing = [r.on(on).interval.reason for r in against.tasks if r.on(on).ok and not r.on(on).interval.ok]
        lines += [f"no interval: {reason}" for reason in dict.fromkeys(missing)]
    lines += [f"note: {note}" for note in cs.notes]
    return lines


def interval_text(bd: BD) -> str:
    """The interval of a BD-rate that is shown; '' beside a missing or withheld BD-rate."""
    return bd.interval.text() if bd.ok else ""
