"""BD-rate and BD-metric semantics: exact cases, swap, direction, monotonicity, overlap."""

from __future__ import annotations

import math
from pathlib import Path
import warnings

import numpy as np
import pandas as pd
import pytest


from harness.bdrate import METHODS, BDResult, bd_metric, bd_rate

HERE = Path(__file__).resolve().parents[1]
TABLE3 = HERE / "anchors" / "paper-table3.csv"

# A smooth, strictly increasing PSNR-like curve (high to low rate, as in Table 3).
A_RATE = np.array([2.0, 1.0, 0.5, 0.25, 0.125])
A_MET = np.array([40.0, 37.5, 34.0, 30.5, 27.0])
# The same idea for a lower-is-better metric (RMSE falls as rate rises).
A_RMSE = np.array([0.40, 0.52, 0.70, 1.00, 1.45])

# pchip and akima are equivariant under adding a constant to the interpolated
# values (log10 rate), and a least-squares cubic with a constant term is too,
# so the exact-scaling case is exact up to float rounding.  1e-9 % leaves
# ample room for rounding (observed ~1e-13).
TOL = 1e-9


def no_warnings(fn, *args, **kw):
    """Call fn and fail if any warning escapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kw)


# --- exact scaling ---------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_exact_scaling_is_minus_20(method):
    r = no_warnings(bd_rate, A_RATE, A_MET, 0.8 * A_RATE, A_MET, method=method)
    assert isinstance(r, BDResult)
    assert r.reason == "" and r.ok
    assert r.value == pytest.approx(-20.0, abs=TOL)
    assert r.overlap == 1.0 and r.method == method and r.policy == "nan"


@pytest.mark.parametrize("method", METHODS)
def test_swap_gives_plus_25(method):
    x = bd_rate(A_RATE, A_MET, 0.8 * A_RATE, A_MET, method=method).value / 100
    y = bd_rate(0.8 * A_RATE, A_MET, A_RATE, A_MET, method=method).value / 100
    assert y * 100 == pytest.approx(25.0, abs=TOL)
    assert y == pytest.approx(1 / (1 + x) - 1, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_lower_is_better_rmse(method):
    r = no_warnings(bd_rate, A_RATE, A_RMSE, 0.8 * A_RATE, A_RMSE,
                    higher_is_better=False, method=method)
    assert r.ok and r.value == pytest.approx(-20.0, abs=TOL)
    # Treating RMSE as higher-is-better makes the curve non-monotonic -> NaN.
    wrong = bd_rate(A_RATE, A_RMSE, 0.8 * A_RATE, A_RMSE, higher_is_better=True, method=method)
    assert math.isnan(wrong.value) and "not monotonic" in wrong.reason


def test_unsorted_input_is_sorted_with_note():
    perm = [2, 0, 4, 1, 3]
    r = bd_rate(A_RATE[perm], A_MET[perm], 0.8 * A_RATE, A_MET)
    assert r.value == pytest.approx(-20.0, abs=TOL)
    assert any("sorted by rate" in n for n in r.notes)


# --- swap property on non-trivial curves ---------------------------------------------

def _random_curve(rng, n=5):
    """Monotonic curve with realistic spacing (0.1..0.8 decades, 2..20 metric units)."""
    rate = 10 ** (-2.5 + np.cumsum(rng.uniform(0.1, 0.8, n)))
    met = 20 + np.cumsum(rng.uniform(2, 20, n))
    return rate, met


@pytest.mark.parametrize("method", METHODS)
def test_swap_property_random_curves(method):
    """bd(B vs A) == 1/(1+bd(A vs B)) - 1 holds to rounding, also with partial overlap.

    Measured in the log domain, |log10(1+x) + log10(1+y)|, which is what the
    package averages; it is exactly antisymmetric up to float rounding.
    """
    rng = np.random.default_rng(7)
    worst_log = worst_rel = 0.0
    n = partial = 0
    for _ in range(300):
        ra, ma = _random_curve(rng)
        rb, mb = _random_curve(rng)
        x = bd_rate(ra, ma, rb, mb, method=method, min_overlap=0)
        y = bd_rate(rb, mb, ra, ma, method=method, min_overlap=0)
        assert math.isnan(x.value) == math.isnan(y.value)
        if not x.ok:
            continue
        n += 1
        partial += x.overlap < 1
        assert x.overlap == y.overlap
        worst_log = max(worst_log, abs(math.log10(1 + x.value / 100) + math.log10(1 + y.value / 100)))
        pred = (1 / (1 + x.value / 100) - 1) * 100
        worst_rel = max(worst_rel, abs(y.value - pred) / max(1.0, abs(pred)))
        bm = bd_metric(ra, ma, rb, mb, method=method, min_overlap=0)
        bn = bd_metric(rb, mb, ra, ma, method=method, min_overlap=0)
        if bm.ok:
            assert bn.value == pytest.approx(-bm.value, abs=1e-9)
    print(f"\n[swap {method}] {n} finite pairs ({partial} partial overlap): worst "
          f"|log10(1+x)+log10(1+y)| = {worst_log:.1e}, worst relative % deviation {worst_rel:.1e}")
    assert n > 100 and partial > 50
    assert worst_log < 1e-12 and worst_rel < 1e-10


def test_swap_property_paper_curves():
    c = paper_curves()
    for task in ["cls", "seg", "dpt", "tti"]:
        vr, vm, hib = c[("vtm", task)]
        hr, hm, _ = c[("hyperprior", task)]
        x = bd_rate(vr, vm, hr, hm, higher_is_better=hib).value / 100
        y = bd_rate(hr, hm, vr, vm, higher_is_better=hib).value / 100
        assert abs(math.log10(1 + x) + math.log10(1 + y)) < 1e-13
        assert y != pytest.approx(-x, rel=1e-3)  # swapping is not negation


def test_akima_overshoot_is_noted():
    """Nearly tied metric values make akima swing far outside the data; pchip does not."""
    ra = np.array([0.131, 0.209, 0.717, 0.953, 1.804])
    ma = np.array([57.21, 80.877, 80.886, 86.32, 90.47])
    rb = ra * 0.8
    ak = no_warnings(bd_rate, ra, ma, rb, ma + 1, method="akima", min_overlap=0)
    pc = no_warnings(bd_rate, ra, ma, rb, ma + 1, method="pchip", min_overlap=0)
    assert any("akima interpolant is not monotonic" in n for n in ak.notes)
    assert not any("not monotonic" in n for n in pc.notes)
    print(f"\n[overshoot] akima {ak.value:.4g} %, pchip {pc.value:.4g} %")


# --- data problems ---------------------------------------------------------------------

def test_non_monotonic_nan_policy():
    met = A_MET.copy()
    met[1] = 41.0  # 1.0 BPFP now beats 2.0 BPFP
    r = no_warnings(bd_rate, A_RATE, A_MET, A_RATE * 0.8, met)
    assert math.isnan(r.value)
    assert r.reason.startswith("test curve is not monotonic")
    assert "(1.6, 40) vs (0.8, 41)" in r.reason  # (rate, metric) as given


@pytest.mark.parametrize("method", METHODS)
def test_non_monotonic_drop_policy(method):
    met = A_MET.copy()
    met[1] = 41.0
    r = no_warnings(bd_rate, A_RATE, A_MET, A_RATE * 0.8, met, policy="drop", method=method)
    assert r.ok and math.isfinite(r.value)
    assert r.policy == "drop"
    assert any("removed 1 dominated point" in n and "(1.6, 40)" in n for n in r.notes)


def test_drop_leaving_too_few_points_is_nan():
    met = np.array([41.0, 38.0, 39.0, 40.0, 20.0])  # rates 2,1,.5,.25,.125: 1 and .5 dominated by .25
    r = bd_rate(A_RATE, A_MET, A_RATE, met, policy="drop")
    assert math.isnan(r.value) and "need at least 4" in r.reason


def test_no_overlap():
    r = no_warnings(bd_rate, A_RATE, A_MET, A_RATE, A_MET + 100)
    assert math.isnan(r.value) and "do not overlap" in r.reason and r.overlap == 0.0
    m = no_warnings(bd_metric, A_RATE, A_MET, A_RATE * 1000, A_MET)
    assert math.isnan(m.value) and "do not overlap" in m.reason


def test_low_overlap_is_a_note_not_a_warning():
    r = no_warnings(bd_rate, A_RATE, A_MET, A_RATE, A_MET + 6)
    assert r.ok and 0 < r.overlap < 0.75
    assert any("low overlap" in n for n in r.notes)


def test_too_few_points():
    r = bd_rate(A_RATE[:3], A_MET[:3], A_RATE[:3] * 0.8, A_MET[:3])
    assert math.isnan(r.value) and "need at least 4" in r.reason
    # pchip itself can do with fewer, if asked
    r2 = bd_rate(A_RATE[:3], A_MET[:3], A_RATE[:3] * 0.8, A_MET[:3], min_points=2)
    assert r2.value == pytest.approx(-20.0, abs=TOL)
    with pytest.raises(ValueError):
        bd_rate(A_RATE, A_MET, A_RATE, A_MET, method="cubic", min_points=3)


def test_nan_points_dropped_with_note():
    met = A_MET.copy()
    met[2] = np.nan
    keep = [0, 1, 3, 4]
    r = no_warnings(bd_rate, A_RATE, met, A_RATE[keep] * 0.8, A_MET[keep])
    assert r.value == pytest.approx(-20.0, abs=TOL)  # same 4 points on both curves: exact again
    # Dropping a point on one curve only changes its interpolant: no longer exactly -20 %.
    r1 = bd_rate(A_RATE, met, A_RATE * 0.8, A_MET)
    assert r1.ok and abs(r1.value + 20) > 0.1
    assert any("non-finite" in n and "#2" in n for n in r.notes)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_nonpositive_rate(bad):
    rate = A_RATE.copy()
    rate[-1] = bad
    r = no_warnings(bd_rate, rate, A_MET, A_RATE, A_MET)
    assert math.isnan(r.value) and "rate must be > 0" in r.reason and r.reason.startswith("anchor")


def test_garbage_does_not_raise():
    assert "values are not numeric" in bd_rate(["a", "b", "c", "d"], A_MET[:4], A_RATE, A_MET).reason
    assert "5 rates but 4" in bd_rate(A_RATE, A_MET[:4], A_RATE, A_MET).reason
    assert "need at least" in bd_rate([], [], A_RATE, A_MET).reason
    assert "equal rate" in bd_rate([1, 1, 2, 4], [30, 31, 32, 33], A_RATE, A_MET).reason


def test_unknown_names_raise():
    with pytest.raises(ValueError):
        bd_rate(A_RATE, A_MET, A_RATE, A_MET, method="linear")
    with pytest.raises(ValueError):
        bd_rate(A_RATE, A_MET, A_RATE, A_MET, policy="hull")
    with pytest.raises(ValueError):
        bd_metric(A_RATE, A_MET, A_RATE, A_MET, policy="sort")


# --- bd_metric ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_bd_metric_signs(method):
    up = no_warnings(bd_metric, A_RATE, A_MET, A_RATE, A_MET + 0.5, method=method)
    assert up.value == pytest.approx(0.5, abs=1e-9) and "positive = test better" in up.notes[-1]
    down = no_warnings(bd_metric, A_RATE, A_RMSE, A_RATE, A_RMSE - 0.05,
                       higher_is_better=False, method=method)
    assert down.value == pytest.approx(-0.05, abs=1e-9) and "negative = test better" in down.notes[-1]


# --- paper Table 3: Hyperprior vs VTM -----------------------------------------------------

def paper_curves():
    df = pd.read_csv(TABLE3)
    out = {}
    for (anchor, task), g in df.groupby(["anchor", "task"]):
        g = g.sort_values("rate_index")
        out[(anchor, task)] = (g.bpfp.to_numpy(), g.metric.to_numpy(), bool(g.higher_is_better.iloc[0]))
    return out


def test_table3_csv_shape():
    df = pd.read_csv(TABLE3)
    assert list(df.columns) == ["anchor", "task", "rate_index", "bpfp", "metric", "metric_name",
                                "higher_is_better", "mse", "source"]
    per_curve = df.groupby(["anchor", "task"]).size()
    assert per_curve.to_dict() == {(a, t): (1 if a == "original" else 5)
                                   for a, t in per_curve.index}
    sizes = df.groupby("anchor").size().to_dict()
    assert sizes == {"original": 5, "vtm": 25, "hyperprior": 25}
    assert (df[df.anchor == "original"].bpfp == 32).all()
    assert (df.source == "paper Table 3").all()
    # rate_index 0 = highest rate
    for (_, _), g in df[df.anchor != "original"].groupby(["anchor", "task"]):
        assert g.sort_values("rate_index").bpfp.is_monotonic_decreasing


def test_paper_hyperprior_vs_vtm():
    c = paper_curves()
    print()
    for policy in ("nan", "drop"):
        for task in ["cls", "seg", "dpt", "csr", "tti"]:
            vr, vm, hib = c[("vtm", task)]
            hr, hm, _ = c[("hyperprior", task)]
            r = no_warnings(bd_rate, vr, vm, hr, hm, higher_is_better=hib, policy=policy)
            m = no_warnings(bd_metric, vr, vm, hr, hm, higher_is_better=hib, policy=policy)
            print(f"[{policy:4s}] {task}: BD-rate {r.value:9.2f} %  (overlap {r.overlap:.2f})"
                  f"  BD-metric {m.value:8.3f}  {r.reason}")
            for n in r.notes:
                print(f"         note: {n}")
            if task == "csr" and policy == "nan":
                assert math.isnan(r.value) and r.reason.startswith("anchor curve is not monotonic")
                assert "(1.83, 100)" in r.reason and "(2.69, 99.8)" in r.reason
                assert math.isnan(m.value)
            else:
                assert r.ok and m.ok, r.reason
            # the other methods never silently "succeed" on the csr curve either
            if task == "csr" and policy == "nan":
                for method in ("akima", "cubic"):
                    assert math.isnan(bd_rate(vr, vm, hr, hm, method=method).value)
