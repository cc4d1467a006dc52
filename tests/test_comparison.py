"""harness.comparison: BD on PSNR in dB, BD-rates withheld below the CTC's overlap minimum (on every
page), and seeded bootstrap intervals over the test run's samples."""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from harness.bundle import bd_rates
from harness.cli import main
from harness.comparison import METRIC_INTERVAL, SHEET_INTERVAL, build, compare_run
from harness.ctc import load_ctc
from harness.curves import Curve, compare, load_run_curve
from harness.results import ResultRecord, job_paths, records_frame
from harness.sheet import sheet_csv, sheet_rows

RATES = np.array([1.6, 0.8, 0.4, 0.2, 0.1])  # highest rate first, as curves are stored
MSES = np.array([0.0625, 0.125, 0.25, 0.5, 1.0])  # 12 .. 0 dB
SPAN = 10 * np.log10(16)  # dB the curves span
FAR_OVERLAP = (SPAN - 11) / (SPAN + 11)  # common / union on the PSNR axis of a curve 11 dB higher


def anchor_curve(name: str, bpfp, mse, metric=None) -> Curve:
    points = pd.DataFrame({"task": "cls", "rate_index": range(len(bpfp)), "bpfp": bpfp, "mse": mse,
                           "metric": metric if metric is not None else np.linspace(90, 50, len(bpfp)),
                           "metric_name": "accuracy", "higher_is_better": True})
    return Curve(name, points, f"made up for {name}")


def write_anchor_sheet(folder: Path, name: str, bpfp, mse) -> None:
    curve = anchor_curve(name, bpfp, mse)
    frame = curve.points.assign(anchor=name, source="test data")
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)


def fake_run(root: Path, samples: int = 12, seed: int = 3) -> Path:
    """A run directory of made-up records: sample s codes at rate point k with BPFP RATES[k] * f_s and
    MSE MSES[k] * g_s (f, g around 1), so the dataset curve is well behaved and resamples stay so."""
    rng = np.random.default_rng(seed)
    f, g = rng.uniform(0.8, 1.2, samples), rng.uniform(0.8, 1.2, samples)
    records = []
    for k, qp in enumerate((22, 27, 32, 37, 42)):
        for s in range(samples):
            name = f"s{s:02d}"
            records.append(ResultRecord(
                codec="fake", codec_version="1", task="cls", rate_parameter="qp", rate_point=float(qp), sample=name,
                bytes=100, bits=800, bpfp=float(RATES[k] * f[s]), mse=float(MSES[k] * g[s]),
                enc_wall_s=1.0, dec_wall_s=0.5, bitstream_sha256="0" * 64, recon_sha256="0" * 64,
                bitstream_path=job_paths(Path("."), "cls", f"qp{qp}", name).relative_bitstream))
    root.mkdir(parents=True)
    records_frame(records).to_csv(root / "results.csv", index=False)
    meta = {"codec": {"name": "fake"}, "ctc": {"name": "fcm-lm-paper", "sha256": load_ctc().sha256},
            "dataset": {"name": "made-up", "root": "made-up"}}
    (root / "run.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def anchors(tmp_path, monkeypatch) -> Path:
    """near: the run's curve at 25 % more rate; far: 11 dB higher PSNR, 1 dB in common with the run's
    0 .. 12 dB (overlap FAR_OVERLAP = 4.5 %, below the CTC's 10 %)."""
    folder = tmp_path / "anchors"
    write_anchor_sheet(folder, "near", RATES * 1.25, MSES)
    write_anchor_sheet(folder, "far", RATES * 1.25, MSES / 10 ** 1.1)
    monkeypatch.setenv("FCM_HARNESS_ANCHORS", str(folder))
    return folder


def test_psnr_bd_rate_is_bjontegaard_on_minus_10_log10_mse_and_needs_no_peak():
    ctc = load_ctc()
    a_mse, t_mse = MSES, np.array([0.05, 0.11, 0.24, 0.45, 0.9])
    t_rate = RATES * np.array([0.9, 0.85, 0.8, 0.85, 0.9])
    anchor, test = anchor_curve("a", RATES, a_mse), anchor_curve("t", t_rate, t_mse)
    [mine] = compare(anchor, test, on="psnr")
    by_hand = bjontegaard.bd_rate(RATES[::-1], -10 * np.log10(a_mse[::-1]), t_rate[::-1],
                                  -10 * np.log10(t_mse[::-1]), method="pchip", require_matching_points=False)
    assert mine.rate.ok and mine.rate.value == pytest.approx(by_hand, rel=1e-12)
    for peak in (1.0, 255.0, 1023.0):  # 10*log10(peak^2 / MSE): the same number for every peak
        with_peak = bjontegaard.bd_rate(RATES[::-1], 10 * np.log10(peak**2 / a_mse[::-1]), t_rate[::-1],
                                        10 * np.log10(peak**2 / t_mse[::-1]), method="pchip",
                                        require_matching_points=False)
        assert with_peak == pytest.approx(mine.rate.value, rel=1e-9)
    result = build(test, [anchor], ctc, ons=("psnr", "mse"), bootstrap=0)
    assert result.anchors[0].tasks[0].on("psnr").value == pytest.approx(by_hand, rel=1e-12)
    assert result.anchors[0].tasks[0].on("mse").value != pytest.approx(by_hand, rel=1e-3)  # linear MSE differs
    assert any("no peak is needed" in note for note in result.notes)


def test_the_overlap_minimum_comes_from_the_ctc():
    assert load_ctc("paper").bd_min_overlap == load_ctc("mini").bd_min_overlap == 0.10


def test_below_the_overlap_minimum_compare_withholds_with_the_reason(anchors, capsys):
    assert main(["compare", "far", "near", "--on", "psnr"]) == 0
    out = capsys.readouterr().out
    assert "withheld" in out and "below the CTC's minimum 10% ([bd] min_overlap)" in out
    assert "no peak is needed" in out
    assert main(["compare", "far", "near", "--on", "psnr", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cls = data["tasks"]["cls"]
    assert cls["bd_rate_percent"] is None and cls["withheld"] and f"overlap {FAR_OVERLAP:.1%}" in cls["reason"]
    assert cls["overlap"] == pytest.approx(FAR_OVERLAP, rel=1e-9)
    assert data["mean_bd_rate_percent"] is None and "(cls withheld)" in data["mean_note"]
    assert main(["compare", "near", "near", "--on", "psnr", "--format", "json"]) == 0  # full overlap: a number
    same = json.loads(capsys.readouterr().out)["tasks"]["cls"]
    assert same["bd_rate_percent"] == pytest.approx(0, abs=1e-9)
    assert same["interval"]["low"] is None and same["interval"]["reason"] == SHEET_INTERVAL


def test_below_the_overlap_minimum_the_sheet_and_bd_rates_withhold(anchors, tmp_path):
    run = fake_run(tmp_path / "run")
    ctc = replace(load_ctc(), anchors=("near", "far"))
    result = compare_run(run, ctc, "fake")  # one comparison: the sheet and bd-rates.json render it
    rows = [r for r in sheet_rows(result) if r["section"] == "summary"]
    by = {(r["task"], r["anchor"]): r for r in rows}
    assert by[("cls", "far")]["bd_rate_psnr_percent"] is None
    assert "psnr: withheld: the curves overlap" in by[("cls", "far")]["note"]
    assert by[("cls", "near")]["bd_rate_psnr_percent"] < 0  # 25 % fewer bits than near: a number
    assert by[("cls", "near")]["bd_rate_mse_percent"] is None  # linear MSE only when asked for
    assert "withheld" in sheet_csv(rows)
    table = bd_rates(result, ctc)
    assert {c["on"] for c in table["comparisons"]} == {"psnr"} and table["min_overlap"] == 0.10
    far = next(c for c in table["comparisons"] if c["anchor"] == "far")["tasks"]["cls"]
    assert far["bd_rate_percent"] is None and far["withheld"] and "below the CTC's minimum" in far["reason"]
    near = next(c for c in table["comparisons"] if c["anchor"] == "near")["tasks"]["cls"]
    assert near["bd_rate_percent"] == pytest.approx(by[("cls", "near")]["bd_rate_psnr_percent"])
    assert near["interval"]["count"] == 200 and near["interval"]["low"] < near["bd_rate_percent"]
    stricter = replace(ctc, bd_min_overlap=1.0)  # the threshold is read from the CTC
    assert all(t["bd_rate_percent"] is None for c in bd_rates(compare_run(run, stricter, "fake"), stricter)["comparisons"]
               for t in c["tasks"].values())


def test_the_bootstrap_interval_is_seeded_holds_the_estimate_and_states_its_count(anchors, tmp_path):
    run = fake_run(tmp_path / "run")
    ctc = replace(load_ctc(), anchors=("near",))
    first = compare_run(run, ctc, ons=("psnr",), bootstrap=150, seed=7)
    again = compare_run(run, ctc, ons=("psnr",), bootstrap=150, seed=7)
    other = compare_run(run, ctc, ons=("psnr",), bootstrap=150, seed=8)
    bd = first.anchors[0].tasks[0].on("psnr")
    assert bd.interval == again.anchors[0].tasks[0].on("psnr").interval  # same seed, same interval
    assert bd.interval != other.anchors[0].tasks[0].on("psnr").interval
    assert bd.interval.count == 150 and bd.interval.used == 150 and bd.interval.seed == 7
    assert bd.interval.low < bd.value < bd.interval.high
    assert bd.interval.high - bd.interval.low < 20  # percent points: a tight curve gives a tight interval
    mean = first.anchors[0].mean("psnr")
    assert mean.value == pytest.approx(bd.value) and mean.interval.ok  # one task: the same resamples
    assert any("150 resamples (seed 7)" in note and "only the test side" in note for note in first.notes)


def test_the_bootstrap_resamples_the_run_and_a_task_metric_interval_is_withheld(anchors, tmp_path):
    """The point estimate is the curve of all samples; the task metric has no per-sample values."""
    run = fake_run(tmp_path / "run")
    ctc = load_ctc()
    test = load_run_curve(run, ctc, on="mse")
    test.points = test.points.sort_values("bpfp")
    test.points["metric"] = np.linspace(45, 85, len(test.points))  # as if evaluated: rising with rate
    near = anchor_curve("near", RATES * 1.25, MSES)
    result = build(test, [near], ctc, ons=("metric", "psnr"), bootstrap=50)
    row = result.anchors[0].tasks[0]
    assert row.on("metric").ok and row.on("metric").interval.reason == METRIC_INTERVAL
    assert row.on("psnr").interval.ok and row.on("psnr").interval.count == 50
    assert "metric" in result.anchors[0].mean("metric").interval.reason  # the mean says why, too
    assert row.enc_time_ratio is None and row.time_points == 0  # the made-up anchor has no times
