"""Bjontegaard-delta (BD-rate, BD-metric) on (BPFP, task metric) curves.

A thin, defensive wrapper over the ``bjontegaard`` package (FAU Erlangen,
v1.3): that package does the interpolation and the integration; this module
decides which points go in, and turns every data problem into a NaN result
with a reason instead of an exception, a warning, or a silent number.

Conventions
-----------
* ``bd_rate`` -- average rate difference of *test* against *anchor* at equal
  task metric, in percent: ``(10**mean(log10 R_test - log10 R_anchor) - 1)*100``
  averaged over the metric interval both curves cover.  Negative = test needs
  fewer bits.  Log-rate is interpolated as a function of the metric
  (the JVET/MPEG spreadsheet convention).
* ``bd_metric`` -- average metric difference at equal rate, averaged over the
  log10-rate interval both curves cover, reported as **test - anchor in the
  metric's own units** (like BD-PSNR).  So for higher-is-better metrics
  (accuracy, mIoU) positive = test better; for lower-is-better metrics (RMSE,
  FID) *negative* = test better.  The result's notes say which.
* Methods: ``"pchip"`` (default; piecewise cubic Hermite, as the JVET/MPEG
  CTC spreadsheets), ``"akima"``, ``"cubic"`` (VCEG-M33: one least-squares
  cubic polynomial through all points).
* Lower-is-better metrics are negated internally so that, after direction
  handling, every well-behaved curve has its metric strictly increasing with
  rate.  (BD-rate does not change under the negation; it only makes the
  monotonicity test uniform.)

Points that go in (per curve, anchor and test independently)
-----------------------------------------------------------
1. Lengths of rate and metric must match (else NaN).
2. Points with a non-finite rate or metric are dropped, with a note.
3. Any rate <= 0 -> NaN (rates live in the log domain).
4. Points are sorted by rate (the ``bjontegaard`` package does *not* sort; it
   only reverses a curve given from high to low, and pchip/akima raise on
   anything else).  A note says when reordering happened.
5. Monotonicity: after sorting by rate, both rate and (direction-adjusted)
   metric must be strictly increasing.  Otherwise, by ``policy``:
   - ``"nan"`` (default): NaN, the reason names the curve and the offending
     points.
   - ``"drop"``: keep the rate-metric Pareto front -- a point is dropped when
     another point of the same curve reaches at least its metric at no more
     rate (it is *dominated*: nobody would operate a codec there).  Walking
     up from the lowest rate, a point is kept only if it strictly beats every
     lower-rate point.  Dropped points are listed in the notes.  For the
     paper's VTM csr curve this drops (2.69 BPFP, 99.80 %), which is beaten by
     (1.83 BPFP, 100 %).  This rule favours the curve it edits (it never
     removes a good point), so say so when comparing.
   A ``"sort"`` policy (sorting by metric and ignoring rate order) is
   deliberately not offered: it produces a curve on which rate falls as
   quality rises, which is not a rate-distortion curve.
6. At least ``min_points`` usable points per curve (default 4, as in the
   common-test-condition practice of four or more rate points; the cubic
   method is a degree-3 least-squares fit and needs >= 4 to be determined, so
   4 is also its floor; pchip/akima can work with 2, and ``min_points`` may be
   lowered to 2 for them).  Fewer -> NaN.

Then the overlap of the two curves on the integration axis (metric for
BD-rate, log10 rate for BD-metric) is computed as
``overlap_length / union_length`` in [0, 1]; 0 -> NaN.  Overlap below
``min_overlap`` (default 0.75, the package's own warning threshold) yields a
number plus a note.  If an akima or cubic interpolant is not monotonic
between the points (overshoot, e.g. near-tied metric values; pchip is
shape-preserving and cannot), a note says so.  Whatever warnings the package, numpy or scipy emit are
captured into notes; none escape.

Swap property
-------------
Because each curve's interpolant depends only on that curve's points, and
the integration interval (the intersection) is symmetric, the mean log-rate
difference is exactly antisymmetric: ``bd_rate(B vs A) = 1/(1 + x) - 1`` with
``x = bd_rate(A vs B)`` (as fractions), for every method, for full and partial
overlap, and under both policies (the policy acts per curve).  It is *not*
``-x``: -20 % one way is +25 % the other.  Numerically it holds to float
rounding (|log10(1+x) + log10(1+y)| < 1e-14), see ``test_bdrate.py``.

Only unknown ``method``/``policy`` names (and a ``min_points`` below the
method's floor) raise ``ValueError``; they are programming errors, not data.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import warnings

import numpy as np

import bjontegaard

__all__ = ["BDResult", "bd_rate", "bd_metric", "METHODS", "POLICIES"]

METHODS = ("pchip", "akima", "cubic")
POLICIES = ("nan", "drop")
_MIN_POINTS_FLOOR = {"pchip": 2, "akima": 2, "cubic": 4}


@dataclass(frozen=True)
class BDResult:
    """One BD number, or NaN with the reason why not.

    value   -- percent (bd_rate) or metric units (bd_metric), or nan
    reason  -- empty when value is a number, else why it is nan
    method  -- interpolation method used
    policy  -- non-monotonic-curve policy used
    overlap -- overlap/union of the two curves on the integration axis (metric
               for BD-rate, log10 rate for BD-metric), 0..1; nan when the
               curves never got that far
    notes   -- everything else worth knowing (dropped points, low overlap,
               captured warnings, sign convention)
    """

    value: float
    reason: str
    method: str
    policy: str
    overlap: float
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason == "" and math.isfinite(self.value)


class _DataProblem(Exception):
    """Internal: a data problem that becomes a NaN result with this reason."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _check_args(method: str, policy: str, min_points: int | None) -> int:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    floor = _MIN_POINTS_FLOOR[method]
    if min_points is None:
        return max(4, floor)
    if int(min_points) < floor:
        raise ValueError(f"min_points={min_points} is below the floor {floor} of method {method!r}")
    return int(min_points)


def _prepare(name: str, rate, metric, *, higher_is_better: bool, policy: str,
             min_points: int, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Clean one curve. Returns (rate, direction-adjusted metric) sorted by rate."""
    try:
        r = np.asarray(rate, dtype=float).reshape(-1)
        m = np.asarray(metric, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise _DataProblem(f"{name} curve: values are not numeric ({exc})") from None
    if r.shape != m.shape:
        raise _DataProblem(f"{name} curve: {r.size} rates but {m.size} metric values")

    bad = ~(np.isfinite(r) & np.isfinite(m))
    if bad.any():
        listed = ", ".join(f"#{i} (rate {r[i]}, metric {m[i]})" for i in np.flatnonzero(bad))
        notes.append(f"{name} curve: dropped {int(bad.sum())} non-finite point(s): {listed}")
        r, m = r[~bad], m[~bad]

    nonpos = r <= 0
    if nonpos.any():
        listed = ", ".join(_fmt(x) for x in r[nonpos])
        raise _DataProblem(f"{name} curve: rate must be > 0 (log domain); got {listed}")

    sign = 1.0 if higher_is_better else -1.0
    m = sign * m
    # Sort by rate; at equal rate put the better metric first (matters for "drop").
    order = np.lexsort((-m, r))
    if not np.array_equal(order, np.arange(r.size)) and not np.array_equal(order, np.arange(r.size)[::-1]):
        notes.append(f"{name} curve: points were not given in rate order; sorted by rate")
    r, m = r[order], m[order]

    def show(i: int) -> str:
        return f"({_fmt(r[i])}, {_fmt(sign * m[i])})"

    breaks = [i for i in range(1, r.size) if not (r[i] > r[i - 1] and m[i] > m[i - 1])]
    if breaks:
        if policy == "nan":
            details = "; ".join(
                f"{'equal rate' if r[i] == r[i - 1] else 'metric not better'} at {show(i)} vs {show(i - 1)}"
                for i in breaks)
            raise _DataProblem(
                f"{name} curve is not monotonic ((rate, metric) points; metric must "
                f"{'rise' if higher_is_better else 'fall'} strictly as rate rises): {details}")
        # policy == "drop": Pareto front, walking up from the lowest rate.
        keep = np.zeros(r.size, dtype=bool)
        best = -1
        dropped = []
        for i in range(r.size):
            if best < 0 or m[i] > m[best]:
                if best >= 0 and r[i] == r[best]:  # cannot happen after lexsort, kept for safety
                    dropped.append(f"{show(i)} (same rate as {show(best)})")
                    continue
                keep[i] = True
                best = i
            else:
                dropped.append(f"{show(i)} (dominated by {show(best)})")
        notes.append(f"{name} curve: policy 'drop' removed {len(dropped)} dominated point(s) "
                     f"(rate, metric): " + "; ".join(dropped))
        r, m = r[keep], m[keep]

    if r.size < min_points:
        raise _DataProblem(f"{name} curve: {r.size} usable point(s), need at least {min_points}")
    return r, m


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    if union <= 0:
        return 0.0
    return max(hi - lo, 0.0) / union


def _check_interpolants(kind, method, f_anchor, f_test, ra, ma, rt, mt, notes) -> None:
    """Note when an interpolant is not monotonic between the knots (akima/cubic overshoot).

    pchip is shape-preserving, so on monotonic points it never triggers;
    akima and the cubic fit can swing far outside the data when two points
    are nearly tied, and the BD number then means little.
    """
    for name, f, r, m in (("anchor", f_anchor, ra, ma), ("test", f_test, rt, mt)):
        x, y = (m, np.log10(r)) if kind == "rate" else (np.log10(r), m)
        grid = np.linspace(x.min(), x.max(), 2001)
        vals = np.asarray(f(grid), dtype=float)
        span = float(y.max() - y.min()) or 1.0
        if np.any(np.diff(vals) < -1e-9 * span):
            lo, hi = float(vals.min()), float(vals.max())
            what = "log10 rate" if kind == "rate" else "metric (negated if lower is better)"
            notes.append(f"{name} curve: the {method} interpolant is not monotonic between the points "
                         f"({what} spans {lo:.4g}..{hi:.4g} vs data {y.min():.4g}..{y.max():.4g}); "
                         f"the BD value may be meaningless, pchip cannot overshoot")


def _run(kind: str, anchor_rate, anchor_metric, test_rate, test_metric, *,
         higher_is_better: bool, method: str, policy: str,
         min_points: int | None, min_overlap: float) -> BDResult:
    need = _check_args(method, policy, min_points)
    notes: list[str] = []
    overlap = float("nan")

    def nan(reason: str) -> BDResult:
        return BDResult(float("nan"), reason, method, policy, overlap, tuple(notes))

    try:
        ra, ma = _prepare("anchor", anchor_rate, anchor_metric, higher_is_better=higher_is_better,
                          policy=policy, min_points=need, notes=notes)
        rt, mt = _prepare("test", test_rate, test_metric, higher_is_better=higher_is_better,
                          policy=policy, min_points=need, notes=notes)
    except _DataProblem as exc:
        return nan(str(exc))

    if kind == "rate":
        overlap = _overlap(ma, mt)
        axis = "metric"
    else:
        overlap = _overlap(np.log10(ra), np.log10(rt))
        axis = "log10 rate"
    if overlap <= 0:
        return nan(f"curves do not overlap on the {axis} axis")
    if overlap < min_overlap:
        notes.append(f"low overlap on the {axis} axis: {overlap:.1%} < {min_overlap:.0%}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
            value, f_anchor, f_test = fn(ra, ma, rt, mt, method=method, require_matching_points=False,
                                         min_overlap=0, interpolators=True)
            _check_interpolants(kind, method, f_anchor, f_test, ra, ma, rt, mt, notes)
        except Exception as exc:  # any failure inside the package is a data problem here
            for w in caught:
                notes.append(f"warning: {w.category.__name__}: {w.message}")
            return nan(f"bjontegaard.{'bd_rate' if kind == 'rate' else 'bd_psnr'} failed: "
                       f"{type(exc).__name__}: {exc}")
    for w in caught:
        notes.append(f"warning: {w.category.__name__}: {w.message}")

    value = float(value)
    if kind == "metric":
        if higher_is_better:
            notes.append("bd_metric = test - anchor in metric units; higher is better, so positive = test better")
        else:
            value = -value  # back to the metric's own units
            notes.append("bd_metric = test - anchor in metric units; lower is better, so negative = test better")
    if not math.isfinite(value):
        return nan(f"non-finite result {value}")
    return BDResult(value, "", method, policy, float(overlap), tuple(notes))


def bd_rate(anchor_rate, anchor_metric, test_rate, test_metric, *,
            higher_is_better: bool = True, method: str = "pchip", policy: str = "nan",
            min_points: int | None = None, min_overlap: float = 0.75) -> BDResult:
    """BD-rate of test vs anchor in percent (negative = test saves bits).

    Rates must be positive (BPFP); metrics in any units.  See the module
    docstring for point cleaning, policies and the overlap rule.
    """
    return _run("rate", anchor_rate, anchor_metric, test_rate, test_metric,
                higher_is_better=higher_is_better, method=method, policy=policy,
                min_points=min_points, min_overlap=min_overlap)


def bd_metric(anchor_rate, anchor_metric, test_rate, test_metric, *,
              higher_is_better: bool = True, method: str = "pchip", policy: str = "nan",
              min_points: int | None = None, min_overlap: float = 0.75) -> BDResult:
    """BD-metric: mean (test - anchor) metric at equal rate, in the metric's units.

    Positive = test better when higher_is_better, negative = test better
    otherwise.  Averaged over the overlapping log10-rate interval.  The same
    point cleaning and policy as bd_rate apply, so both numbers describe the
    same points.
    """
    return _run("metric", anchor_rate, anchor_metric, test_rate, test_metric,
                higher_is_better=higher_is_better, method=method, policy=policy,
                min_points=min_points, min_overlap=min_overlap)
