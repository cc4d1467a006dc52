"""Anchors as data and `harness compare` on published points and runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.ctc import load_ctc
from harness.curves import available_anchors, compare, load_anchor, load_run_curve, promote_run
from harness.runner import RunRequest, execute


def test_paper_anchors_are_shipped_with_their_source():
    names = available_anchors()
    assert {"paper-vtm", "paper-hyperprior", "paper-original"} <= set(names)
    vtm = load_anchor("paper-vtm")
    assert "paper Table 3" in vtm.source
    cls = vtm.task("cls")
    assert list(cls.bpfp) == [1.94, 1.03, 0.23, 0.04, 0.01] and list(cls.metric) == [99.8, 97.4, 74.6, 25.8, 7.2]


def _strict(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def test_compare_paper_vtm_hyperprior_json(capsys):
    assert main(["compare", "paper-vtm", "paper-hyperprior", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=_strict)  # NaN/Infinity are not JSON
    assert data["method"] == "pchip" and data["policy"] == "nan"
    assert data["tasks"]["csr"]["bd_rate_percent"] is None and "not monotonic" in data["tasks"]["csr"]["reason"]
    assert data["tasks"]["dpt"]["bd_rate_percent"] == pytest.approx(-15.40, abs=0.01)  # RMSE: lower is better
    assert data["tasks"]["cls"]["bd_rate_percent"] == pytest.approx(398.69, abs=0.01)
    assert data["tasks"]["csr"]["overlap"] is None  # the curve never got to an overlap: null, not NaN


def test_compare_table_and_swap(capsys):
    assert main(["compare", "paper-hyperprior", "paper-vtm"]) == 0
    out = capsys.readouterr().out
    x = 398.6879238897321 / 100
    assert f"{(1 / (1 + x) - 1) * 100:+.2f} %" in out  # swapping anchor and test gives 1/(1+x) - 1
    assert "mean" in out and "without csr" in out


def test_unknown_anchor_suggests(capsys):
    assert main(["compare", "paper-vtn", "paper-vtm"]) == 1
    assert "did you mean 'paper-vtm'" in capsys.readouterr().err


def test_runs_compare_on_mse_and_promote(tmp_path, data_root, capsys):
    ctc = load_ctc()
    a = execute(RunRequest(codec="zlib", data_root=data_root, out=tmp_path / "a", jobs=1, progress=False))
    curve = load_run_curve(a.run_dir, ctc, on="mse")
    assert set(curve.tasks) == {"cls", "csr"} and len(curve.task("cls")) == 5
    rows = compare(curve, curve, on="mse")
    assert any(r.rate.ok for r in rows)  # else the next line would pass on all-NaN results
    assert all(r.rate.value == pytest.approx(0, abs=1e-9) for r in rows if r.rate.ok)
    with pytest.raises(Exception, match="no task metrics yet"):
        load_run_curve(a.run_dir, ctc, on="metric")
    path = promote_run(a.run_dir, "zlib-reference", ctc, tmp_path / "anchors")
    source = pd.read_csv(path).source.iloc[0]
    assert source.startswith("harness run --codec zlib (version") and f"under CTC fcm-lm-paper {ctc.version}" in source
    assert str(tmp_path) not in source  # anchor sheets get shared: no paths of this machine
    import os
    os.environ["FCM_HARNESS_ANCHORS"] = str(tmp_path / "anchors")
    try:
        assert "zlib-reference" in available_anchors()
        assert main(["compare", "zlib-reference", str(a.run_dir), "--on", "mse"]) == 0
        assert "+0.00 %" in capsys.readouterr().out
    finally:
        del os.environ["FCM_HARNESS_ANCHORS"]


def test_a_sheet_source_names_no_path_of_this_machine():
    from harness.curves import run_description
    meta = {"codec": {"name": "klt", "version": "1.0", "options": {"models": "/home/me/models", "tail": "mini-lm"},
                      "tools": {"encoder": "/opt/vtm/bin/EncoderApp"}},
            "dataset": {"name": "mini"}, "ctc": {"name": "fcm-mini", "version": "1.2", "sha256": "ab" * 32}}
    text = run_description(meta)
    assert "/home/me" not in text and "/opt/vtm" not in text
    assert "models=<path>" in text and "tail=mini-lm" in text


def test_model_hashes_in_a_sheet_source():
    from harness.curves import model_hashes
    same = {"lm@16": "a" * 64, "lm@32": "a" * 64, "sal@2": "b" * 64}
    assert model_hashes(same) == f"lm {'a' * 12}, sal {'b' * 12}"  # one model per task
    per_point = {"sal@0.01": "c" * 64, "sal@0.1": "d" * 64}
    assert model_hashes(per_point) == f"sal@0.01 {'c' * 12}, sal@0.1 {'d' * 12}"
    assert model_hashes({}) == ""


def test_compare_on_psnr_says_why_sheets_have_no_interval(capsys):
    """Anchor sheets hold means per rate point: no samples to resample, so the interval column says so."""
    assert main(["compare", "paper-vtm", "paper-hyperprior", "--on", "psnr"]) == 0
    out = capsys.readouterr().out
    assert "on psnr" in out and "95% interval" in out and "no peak is needed" in out
    assert "no interval: the test curve is an anchor sheet" in out
    assert main(["compare", "paper-vtm", "paper-hyperprior", "--on", "psnr", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["on"] == "psnr" and data["min_overlap"] == 0.10
    assert data["tasks"]["dpt"]["bd_rate_percent"] is not None and data["tasks"]["dpt"]["interval"]["low"] is None
    assert main(["compare", "paper-vtm", "paper-hyperprior", "--on", "ssim"]) == 1
    assert "--on must be 'metric', 'psnr' or 'mse'" in capsys.readouterr().err
