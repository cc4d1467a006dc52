"""The mini CTC beside the paper's: found by name, by task, by dataset and by run; saliency/LM metrics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.ctc import ctc_of_run, ctc_with_task, load_ctc
from harness.errors import CTCError
from harness.metrics import saliency_cc, saliency_kl, token_agreement
from harness.registry import default_registry
from harness.sources import resolve_ctc


def test_shipped_ctcs_by_name_and_by_task():
    mini = load_ctc("mini")
    assert mini.name == "fcm-mini" and set(mini.tasks) == {"sal", "lm"}
    assert ctc_with_task("sal").sha256 == mini.sha256
    assert ctc_with_task("cls").name == "fcm-lm-paper"
    assert resolve_ctc(None, "mini", default_registry()).name == "fcm-mini"
    assert resolve_ctc(None, "demo", default_registry()).name == "fcm-lm-paper"


def test_mini_shapes_packing_and_own_qps():
    mini = load_ctc("mini")
    assert mini.task("sal").shape == (1, 1, 257, 384) and mini.task("sal").packing == "dinov2"
    assert mini.task("lm").shape == (1, 1, -1, 576) and mini.task("lm").packing == "llama3"
    assert mini.rate_points("lm", "handcrafted") == (2, 7, 12, 17, 22)
    assert mini.rate_points("sal", "handcrafted") == (22, 27, 32, 37, 42)  # the CTC's common QPs


def test_the_ctc_of_a_run_is_found_by_hash_and_a_wrong_override_refused(tmp_path):
    mini = load_ctc("mini")
    meta = {"ctc": {"name": mini.name, "sha256": mini.sha256}}
    assert ctc_of_run(meta, tmp_path).root == mini.root
    with pytest.raises(CTCError, match="coded under CTC 'fcm-mini'"):
        ctc_of_run(meta, tmp_path, "paper")
    with pytest.raises(CTCError, match="give it with --ctc DIR"):
        ctc_of_run({"ctc": {"name": "gone", "sha256": "0" * 64}}, tmp_path)


def test_saliency_metrics():
    rng = np.random.default_rng(1)
    a = rng.random((16, 16)).astype(np.float32)
    assert saliency_cc(a, a) == pytest.approx(1.0)
    assert saliency_kl(a, a) == 0.0
    b = rng.random((16, 16)).astype(np.float32)
    assert abs(saliency_cc(a, b)) < 0.3 and saliency_kl(b, a) > 0.01
    assert saliency_cc(1 - a, a) == pytest.approx(-1.0)


def test_token_agreement_pools_positions():
    assert token_agreement([np.array([1, 2, 3]), np.array([4])], [np.array([1, 2, 0]), np.array([4])]) == 75.0
    with pytest.raises(ValueError):
        token_agreement([np.array([1, 2])], [np.array([1])])


def test_curves_read_only_the_primary_metric_from_metrics_csv(tmp_path):
    import pandas as pd

    from harness.results import primary_metrics

    frame = pd.DataFrame({"task": ["sal"] * 2, "rate_point": ["22"] * 2, "metric": ["cc", "kl"],
                          "value": [0.9, 0.1], "primary": [True, False]})
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    read = primary_metrics(pd.read_csv(tmp_path / "metrics.csv"))
    assert read.metric.tolist() == ["cc"]
    old = frame.drop(columns="primary")  # metrics.csv written before secondary metrics: every row counts
    assert len(primary_metrics(old)) == 2


def test_each_shipped_ctc_names_anchors_that_ship_and_cover_its_tasks():
    from harness.curves import available_anchors, load_anchor

    shipped = available_anchors()
    for name in ("paper", "mini"):
        ctc = load_ctc(name)
        assert ctc.anchors and all(a in shipped for a in ctc.anchors)
        for anchor in ctc.anchors:
            assert set(load_anchor(anchor).tasks) <= set(ctc.tasks)
    # every mini anchor was made under the mini CTC's current conditions for its codec family: after
    # editing those (ranges, QPs, sample lists, a learned family's recipe), re-run and re-promote it
    ctc = load_ctc("mini")
    fingerprints = {family: ctc.family_fingerprint(family) for family in (*ctc.families, None)}
    for anchor in ctc.anchors:
        sheet = load_anchor(anchor)
        assert set(sheet.tasks) == {"sal", "lm"} and all(len(sheet.task(t)) >= 4 for t in ("sal", "lm")), anchor
        found = re.search(r"(\w+) family conditions ([0-9a-f]{12})", sheet.source)
        assert found, f"{anchor}: its source names no family conditions"
        family = None if found.group(1) == "feature" else found.group(1)
        assert found.group(2) == fingerprints[family], f"{anchor}: made under other {found.group(1)} conditions"


def test_the_shipped_vtm_sheet_of_the_mini_ctc_compares_with_mini_vvc(capsys):
    """mini-vtm: a full run of the real VTM-23.3 over the mini dataset, shipped as data."""
    import json as _json

    from harness.cli import main
    from harness.curves import load_anchor

    vtm = load_anchor("mini-vtm")
    ctc = load_ctc("mini")
    assert "VTM Encoder Version 23.3" in vtm.source and "cf3cd016e2618490f58ab04e2eb167d38410b659" in vtm.source
    # coded under an earlier version of the mini CTC whose handcrafted-family conditions are the current ones
    assert f"handcrafted family conditions {ctc.family_fingerprint('handcrafted')}" in vtm.source
    assert len(vtm.task("sal")) == len(vtm.task("lm")) == 5
    assert main(["compare", "mini-vtm", "mini-vvc", "--format", "json"]) == 0
    table = _json.loads(capsys.readouterr().out)
    for task in ("sal", "lm"):  # a number, not n/a: both sheets span the same QPs
        assert isinstance(table["tasks"][task]["bd_rate_percent"], float)


def test_check_codec_runs_on_the_mini_ctc_with_its_own_tasks():
    from harness.testing import check_codec
    spec = default_registry().codec("zlib").spec
    report = check_codec(spec, ctc=load_ctc("mini"))  # used to be a KeyError: 'sal'
    assert report.tasks == ("sal", "lm") and all(len(bits) == 5 for bits in report.bits.values())
