"""Feature analyses: known answers on hand-made arrays, and the whole demo dataset."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage, stats

from harness.analysis import channels, common, dataset, dct, histograms, stats as analysis_stats

# one namespace over the analysis modules, as the functions are spread over them
A = SimpleNamespace(**{k: v for m in (common, analysis_stats, histograms, dct, channels, dataset)
                       for k, v in vars(m).items() if not k.startswith("__")})

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ statistics

def test_moments_match_scipy_and_merge_over_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, 50_001) * 4 + 100).astype(np.float32)  # heavy tail, large offset
    monkeypatch.setattr(common, "CHUNK", 997)  # force many chunk merges
    r = A.Moments().update(x).result()
    x64 = x.astype(np.float64)
    assert r["count"] == x.size
    assert r["max"] == x.max() and r["min"] == x.min()
    assert r["mean"] == pytest.approx(x64.mean(), rel=1e-12)
    assert r["std"] == pytest.approx(x64.std(), rel=1e-10)
    assert r["skewness"] == pytest.approx(stats.skew(x64), rel=1e-8)
    assert r["excess_kurtosis"] == pytest.approx(stats.kurtosis(x64, fisher=True, bias=True), rel=1e-8)


def test_gaussian_excess_kurtosis_near_zero():
    x = np.random.default_rng(0).standard_normal(400_000)
    assert abs(A.feature_stats(x)["all"]["excess_kurtosis"]) < 0.05


def test_two_point_distribution_known_moments():
    x = np.array([-1.0, 1.0] * 10)
    r = A.feature_stats(x)["all"]
    assert (r["mean"], r["std"], r["skewness"], r["excess_kurtosis"]) == pytest.approx((0, 1, 0, -2))


def test_feature_stats_per_layer():
    f = np.zeros((2, 4, 5, 6), np.float32)
    for layer in range(4):
        f[:, layer] = layer
        f[1, layer, 0, 0] = 10 * (layer + 1)  # one peak per layer
    r = A.feature_stats(f, layer_axis=1)
    assert len(r["layers"]) == 4
    for layer, s in enumerate(r["layers"]):
        assert s["count"] == 60
        assert s["max"] == 10 * (layer + 1) and s["min"] == layer
        assert s["mean"] == pytest.approx((59 * layer + 10 * (layer + 1)) / 60)
    assert r["all"]["count"] == f.size and r["all"]["max"] == 40 and r["all"]["min"] == 0
    assert r["all"]["mean"] == pytest.approx(f.mean(dtype=np.float64))
    assert r["all"]["std"] == pytest.approx(f.std(dtype=np.float64))
    assert A.feature_stats(f, None)["layers"] == []


def test_strided_layer_view_is_not_copied_whole(monkeypatch):
    f = np.arange(2 * 4 * 8 * 8, dtype=np.float32).reshape(2, 4, 8, 8)
    monkeypatch.setattr(common, "CHUNK", 10)
    part = A._slice(f, 1, 2)
    pieces = list(A._flat_chunks(part))
    assert max(p.size for p in pieces) <= 10
    assert np.array_equal(np.sort(np.concatenate(pieces)), np.sort(part.ravel()))


# ------------------------------------------------------------------ 10-bit IV and Sobel GM

def test_constant_frame_has_zero_variance_and_gradient():
    r = A.quantized_stats(np.full((20, 30), 517, np.uint16))
    assert r["iv"] == 0 and r["gm"] == 0 and r["mean"] == 517
    assert r["gm_count"] == 18 * 28  # interior only


def test_horizontal_ramp_slope_one():
    h, w = 9, 50
    frame = np.tile(np.arange(w, dtype=np.uint16), (h, 1))  # q[i, j] = j
    r = A.quantized_stats(frame)
    # gx = [1,2,1] smoothing (sum 4) x central difference q[j+1]-q[j-1] = 2  ->  8; gy = 0
    assert r["gm"] == 8.0
    assert r["iv"] == pytest.approx((w * w - 1) / 12)  # variance of 0..w-1
    # the border (where scipy's reflect mode would give 4) is not counted
    full = np.hypot(ndimage.sobel(frame.astype(float), 1), ndimage.sobel(frame.astype(float), 0))
    assert full[:, 0].max() == 4 and full.mean() < 8


def test_vertical_and_diagonal_ramps():
    i, j = np.mgrid[0:12, 0:15].astype(np.uint16)
    assert A.quantized_stats(i)["gm"] == 8.0
    assert A.quantized_stats(i + j)["gm"] == pytest.approx(8 * math.sqrt(2))
    assert A.quantized_stats(3 * j)["gm"] == 24.0  # linear in the slope


def test_sobel_equals_scipy_on_interior():
    q = np.random.default_rng(3).integers(0, 1024, (31, 47)).astype(np.uint16)
    ref = np.hypot(ndimage.sobel(q.astype(np.float64), 1), ndimage.sobel(q.astype(np.float64), 0))[1:-1, 1:-1]
    np.testing.assert_allclose(A.sobel_magnitude(q), ref, rtol=1e-6)


def test_two_level_frame_variance():
    frame = np.zeros((10, 10), np.uint16)
    frame[:, 5:] = 1023
    assert A.quantized_stats(frame)["iv"] == pytest.approx(1023**2 / 4)


def test_quant_stats_merge_is_exact():
    rng = np.random.default_rng(4)
    a, b = (rng.integers(0, 1024, (17, 23)).astype(np.uint16) for _ in range(2))
    merged = A.QuantStats().add(a).merge(A.QuantStats().add(b)).result()
    both = np.concatenate([a.ravel(), b.ravel()]).astype(np.float64)
    assert merged["iv"] == pytest.approx(both.var(), rel=1e-12)
    gm = (A.sobel_magnitude(a).sum() + A.sobel_magnitude(b).sum()) / (2 * 15 * 21)
    assert merged["gm"] == pytest.approx(gm)


def test_tiny_frames_have_no_gradient():
    r = A.quantized_stats(np.ones((2, 9), np.uint16))
    assert r["gm_count"] == 0 and math.isnan(r["gm"]) and r["iv"] == 0


def test_quantize_plane_uses_ctc_floor_rule():
    plane = np.array([[-20.0, 0.0, 20.0, 50.0]], np.float32)
    q = A.quantize_plane(plane, -20, 20)
    assert q.tolist() == [[0, 511, 1023, 1023]]  # floor(20 * 1023/40) = 511


# ------------------------------------------------------------------ histograms

def test_histogram_counts_sum_and_match_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, 100_003)
    edges = np.linspace(-5, 5, 101)
    c = A.value_histogram(x, edges)
    assert c.sum() == x.size
    inside = np.histogram(x, edges)[0]
    np.testing.assert_array_equal(c[1:-1], inside)
    assert c[0] == (x < -5).sum() and c[-1] == (x > 5).sum()


def test_histogram_edges_and_accumulation():
    edges = np.linspace(0, 1, 11)
    values = np.concatenate([edges, [-0.5, 2.0]])  # every edge exactly, and two outside
    c = A.value_histogram(values, edges)
    np.testing.assert_array_equal(c[1:-1], np.histogram(edges, edges)[0])  # last edge in the last bin
    assert c[0] == 1 and c[-1] == 1
    c2 = A.value_histogram(values, edges, c.copy())
    np.testing.assert_array_equal(c2, 2 * c)
    cdf = A.histogram_cdf(c)
    assert cdf[-1] == pytest.approx(1 - 1 / values.size) and np.all(np.diff(cdf) >= 0)


def test_histogram_set_truncation_piles_mass_at_bounds():
    from harness.ctc import load_ctc
    ctc = load_ctc()
    hs = A.HistogramSet(A.histogram_edges(ctc, "csr", bins=100))
    x = np.array([-30.0, -7.0, 0.0, 7.0, 30.0], np.float32).reshape(1, 1, 1, 5)
    hs.add_feature(x, None)
    orig, trunc = hs.counts[("original", 0, "zoom")], hs.counts[("truncated", 0, "zoom")]
    assert orig.sum() == trunc.sum() == 5
    edges = hs.edges[0]["zoom"]
    expected = A.value_histogram(np.array([-5.0, -5.0, 0.0, 5.0, 5.0]), edges)
    np.testing.assert_array_equal(trunc, expected)
    assert trunc.max() == 2  # two values piled on each bound
    assert trunc[0] == 0 and trunc[-1] == 0  # nothing outside the window after truncation
    assert orig[0] == 1 and orig[-1] == 1  # ±30 are outside the zoom window [-7.5, 7.5]


def test_histogram_plot_written(tmp_path):
    from harness.ctc import load_ctc
    ctc = load_ctc()
    hs = A.HistogramSet(A.histogram_edges(ctc, "dpt", bins=50))
    f = np.random.default_rng(6).normal(0, 2, (1, 4, 10, 12)).astype(np.float32)
    hs.add_feature(f, 1, reconstructed=f * 0.9)
    assert hs.series() == ["original", "truncated", "reconstructed"]
    path = A.plot_value_histograms(hs, tmp_path / "h.png", "dpt", ["L1", "L2", "L3", "L4"])
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5000


# ------------------------------------------------------------------ DCT

def test_dct_of_constant_block_is_all_dc():
    frame = np.full((32, 48), 2.5)
    r = A.dct_blocks(frame, size=16, count=3, seed=0)
    assert r["dct"].shape == (3, 16, 16) and r["n_blocks"] == 6
    for mag in r["dct"]:
        assert mag[0, 0] == pytest.approx(16 * 2.5)  # orthonormal: DC = sum / 16
        mag[0, 0] = 0
        assert np.abs(mag).max() < 1e-9
    assert r["dc_energy"] == pytest.approx(1.0) and r["low_energy"] == pytest.approx(1.0)
    assert r["mean_abs"][0, 0] == pytest.approx(40.0)


def test_dct_energy_is_preserved_and_picks_deterministic():
    frame = np.random.default_rng(7).normal(size=(40, 70))  # partial blocks are dropped
    a, b = A.dct_blocks(frame, 16, 4, seed=11), A.dct_blocks(frame, 16, 4, seed=11)
    assert a["positions"] == b["positions"] and len(set(a["positions"])) == 4
    for (y, x), blk, mag in zip(a["positions"], a["blocks"], a["dct"]):
        assert np.array_equal(blk, frame[y:y + 16, x:x + 16])
        assert (mag**2).sum() == pytest.approx((blk**2).sum())  # Parseval (ortho)
    full = frame[:32, :64]
    assert a["n_blocks"] == 8
    assert a["mean_sq"].sum() * 8 == pytest.approx((full**2).sum(), rel=1e-5)
    assert A.dct_blocks(frame, 16, 4, seed=12)["positions"] != a["positions"]


def test_dct_plots_written(tmp_path):
    frame = np.random.default_rng(8).normal(size=(64, 64))
    r = A.dct_blocks(frame)
    p1 = A.plot_dct_blocks([("a", r), ("b", r)], tmp_path / "blocks.png", "t")
    p2 = A.plot_mean_dct([("a", r["mean_abs"], A.energy_compaction(r["mean_sq"]))], tmp_path / "mean.png", "t")
    for p in (p1, p2):
        assert p.read_bytes().startswith(PNG) and p.stat().st_size > 2000


# ------------------------------------------------------------------ channels and tokens

def test_outlier_channels_find_planted_channels():
    f = np.random.default_rng(9).normal(size=(1, 1, 30, 64)).astype(np.float32)
    f[0, 0, 3, 17] = -500
    f[0, 0, 9, 40] = 90
    r = A.outlier_channels(f, top=3)
    assert [c["channel"] for c in r["channels"][:2]] == [17, 40]
    assert r["channels"][0]["peak"] == -500 and r["channels"][1]["peak"] == 90
    assert r["channels"][0]["ratio_to_median"] > 50
    sd3 = np.zeros((1, 16, 4, 4), np.float32)
    sd3[0, 5, 1, 1] = 3
    assert A.outlier_channels(sd3, top=1, channel_axis=1)["channels"][0]["channel"] == 5


def test_channel_stats_accumulate_like_one_feature():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(1, 1, 5, 8)), rng.normal(size=(1, 1, 7, 8))
    acc = A.ChannelStats()
    acc.add(a), acc.add(b)
    both = np.concatenate([a, b], axis=2)
    got, want = acc.result(8)["channels"], A.outlier_channels(both, top=8)["channels"]
    assert [c["channel"] for c in got] == [c["channel"] for c in want]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12)


def test_token_correlation():
    row = np.random.default_rng(11).normal(size=64)
    same = np.tile(row, (10, 1))
    assert A.token_correlation(same)["row_corr"] == pytest.approx(1.0)
    alt = np.stack([row if t % 2 == 0 else -row for t in range(10)])
    assert A.token_correlation(alt)["row_corr"] == pytest.approx(-1.0)
    # AR(1) along tokens with coefficient 0.6 on every channel -> lag-1 autocorrelation ~0.6
    rng = np.random.default_rng(12)
    x = np.zeros((4000, 32))
    for t in range(1, 4000):
        x[t] = 0.6 * x[t - 1] + rng.normal(size=32)
    x += rng.normal(0, 50, 32)  # persistent channel offsets: row_corr high, lag1 unaffected
    r = A.token_correlation(x[None, None])
    assert r["lag1_autocorr"] == pytest.approx(0.6, abs=0.03)
    assert r["row_corr"] > 0.99
    assert A.token_correlation(same, skip_first=9)["pairs"] == 0


# ------------------------------------------------------------------ whole demo dataset

TASKS = ("cls", "seg", "dpt", "csr", "tti")


@pytest.fixture(scope="module")
def demo():
    from harness.ctc import load_ctc
    from harness.registry import default_registry
    from harness.sources import resolve_dataset
    return resolve_dataset("demo", None, load_ctc(), default_registry(), progress=False).dataset


@pytest.fixture(scope="module")
def demo_run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_analysis")
    seen = []
    summary = A.analyze_dataset(demo, TASKS, out, progress=lambda t, d, n: seen.append((t, d, n)))
    return out, summary, seen


@pytest.mark.slow
def test_demo_analysis_writes_page_and_figures(demo_run):
    out, summary, seen = demo_run
    html = (out / "index.html").read_text()
    for task in TASKS:
        assert f'id="{task}"' in html
        for kind in ("hist", "dct_blocks", "dct_mean"):
            png = out / f"{task}_{kind}.png"
            assert png.read_bytes().startswith(PNG) and png.stat().st_size > 2000
            assert f'src="{task}_{kind}.png"' in html
    assert len(re.findall(r"<img ", html)) == 15
    assert seen[-1] == ("tti", 6, 6) and {t for t, _, _ in seen} == set(TASKS)
    assert summary["seconds"] < 120  # ~15 s of CPU on 2 cores; generous for loaded machines


@pytest.mark.slow
def test_demo_tables(demo_run, demo):
    import csv
    out, summary, _ = demo_run
    rows = list(csv.DictReader((out / "stats.csv").open()))
    assert [(r["task"], r["layer"]) for r in rows] == [
        ("cls", "all"), ("seg", "all"), ("dpt", "L1"), ("dpt", "L2"), ("dpt", "L3"), ("dpt", "L4"),
        ("csr", "all"), ("tti", "all")]
    by = {(r["task"], r["layer"]): r for r in rows}
    # demo features are generated with outliers near the paper's ranges
    assert float(by["cls", "all"]["min"]) < -400 and float(by["cls", "all"]["max"]) <= 94.14
    assert float(by["csr", "all"]["min"]) == -71 and float(by["csr", "all"]["max"]) == 47
    assert float(by["cls", "all"]["excess_kurtosis"]) > 100  # outlier channels
    assert abs(float(by["tti", "all"]["excess_kurtosis"])) < 1  # smooth gaussian-like latent
    # tti is not truncated: both quantisations coincide
    assert by["tti", "all"]["iv_original"] == by["tti", "all"]["iv_handcrafted"]
    # a direct check of one number: cls max over the dataset
    direct = max(float(demo.load(s).max()) for s in demo.samples("cls"))
    assert float(by["cls", "all"]["max"]) == pytest.approx(direct, rel=1e-6)
    outliers = list(csv.DictReader((out / "outliers.csv").open()))
    assert outliers[0]["task"] == "cls" and outliers[0]["channel"] == "17"
    samples = list(csv.DictReader((out / "samples.csv").open()))
    assert len(samples) == 6 + 3 + 4 + 6 + 6


@pytest.mark.slow
def test_reconstruction_through_a_codec(demo, tmp_path):
    recon = A.codec_reconstructor(demo.ctc, "zlib", 4)
    summary = A.analyze_dataset(demo, ["cls"], tmp_path, reconstruct=recon, limit=1)
    assert summary["reconstruction"] == "zlib @ shift4"
    html = (tmp_path / "index.html").read_text()
    assert "vs reconstructed" in html and "zlib @ shift4" in html


@pytest.mark.slow
def test_analyze_command_with_a_run(tmp_path, capsys):
    """harness analyze over the demo, with reconstructions decoded from a run directory."""
    from harness.cli import main

    run = tmp_path / "run"
    assert main(["run", "--codec", "zlib", "--task", "tti", "--limit", "2", "--rate-points", "4",
                 "--out", str(run), "--jobs", "1", "--no-progress"]) == 0
    out = tmp_path / "analysis"
    assert main(["analyze", "--task", "tti", "--run", str(run), "--rate-point", "4", "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "zlib run @ shift4" in html and (out / "tti_hist.png").stat().st_size > 2000
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text('{"dataset": {"name": "data-x", "root": "x"}, "codec": {"name": "zlib"}, '
                                    '"ctc": {"sha256": "0"}}')
    assert main(["analyze", "--task", "tti", "--run", str(other), "--rate-point", "4", "--out", str(out)]) == 1
    assert "coded dataset 'data-x', not 'demo-v3'" in capsys.readouterr().err


def test_scaled_ctc_changes_only_one_range(tmp_path):
    from harness.analysis.truncation import scaled_ctc
    from harness.ctc import load_ctc

    ctc = load_ctc()
    copy = load_ctc(scaled_ctc(ctc, "dpt", "handcrafted", 2.0, tmp_path / "ctc"))
    assert copy.truncation("dpt", "handcrafted").lo == (-2.0, -4.0, -20.0, -40.0)
    assert copy.truncation("dpt", "learned") == ctc.truncation("dpt", "learned")
    assert copy.truncation("cls", "handcrafted") == ctc.truncation("cls", "handcrafted")
    assert copy.sha256 != ctc.sha256


@pytest.mark.slow
def test_truncation_study_command(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "study"
    assert main(["truncation-study", "--codec", "zlib", "--task", "tti", "--factors", "1,2", "--limit", "2",
                 "--rate-points", "2,4", "--out", str(out)]) == 0
    table = __import__("pandas").read_csv(out / "truncation.csv")
    assert sorted(table.factor.unique()) == [1, 2] and len(table) == 4
    assert (table.value >= 0).all()  # FID per factor and rate point
    # a wider range spends the 10 bits on more values: coarser steps, fewer bits at the same drop
    wide, narrow = table[table.factor == 2], table[table.factor == 1]
    assert wide.bpfp.mean() < narrow.bpfp.mean()
    assert (out / "truncation.png").stat().st_size > 2000


def test_rate_points_run_from_the_highest_rate_for_both_families(ctc):
    """λ weighs distortion: the largest λ is the highest rate, as the lowest QP is."""
    assert ctc.rate_points("cls", "learned") == (0.01, 0.0035, 0.003, 0.0017, 0.001)
    assert ctc.rate_points("csr", "learned")[0] == 10.0
    assert ctc.rate_points("cls", "handcrafted") == (22, 27, 32, 37, 42)


def test_generalization_rate_index_0_is_the_highest_rate(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import pandas as pd

    import harness.analysis.generalization as study

    asked = []

    def fake_execute(request):
        asked.append((request.rate_points_of, request.tasks[0], tuple(request.rate_points)))
        return SimpleNamespace(table=pd.DataFrame({"status": ["ok"], "bpfp": [1.0], "mse": [0.5]}))

    monkeypatch.setattr(study, "execute", fake_execute)
    study.generalization_study("hyperprior", ["cls", "csr"], tmp_path, {}, rate_index=0, evaluate=False,
                               progress=False)
    assert asked == [("cls", "cls", (0.01,)), ("cls", "csr", (0.01,)), ("csr", "cls", (10.0,)),
                     ("csr", "csr", (10.0,))]
