"""The runner: bits from bytes, failed rows for bad codecs, resumption, verification."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_root, write_feature
from harness.errors import HarnessError, RunError
from harness.runner import RunRequest, execute
from harness.verify import verify_run

STABLE = ["task", "rate_point", "sample", "bytes", "bpfp", "mse", "bitstream_sha256", "recon_sha256", "status"]


def _run(root, out, **kw):
    kw.setdefault("codec", "zlib")
    return execute(RunRequest(data_root=root, out=out, jobs=1, progress=False, **kw))


def test_run_counts_bits_from_the_stored_bytes(data_root, tmp_path):
    outcome = _run(data_root, tmp_path / "run", rate_points=[0, 4])
    table = outcome.table
    assert len(table) == 2 * 2 * 2 and (table["status"] == "ok").all()
    for row in table.itertuples():
        data = (outcome.run_dir / row.bitstream_path).read_bytes()
        assert row.bytes == len(data) and row.bits == 8 * len(data)
        assert row.bpfp == pytest.approx(8 * len(data) / row.points)
    csr = table[table.task == "csr"]
    assert set(csr.points) == {5 * 4096, 7 * 4096}  # per-sample points: variable length
    lossless = table[table.rate_point == 0]
    assert (lossless.frame_psnr_db == np.inf).all()
    meta = json.loads((outcome.run_dir / "run.json").read_text())
    assert meta["ctc"]["sha256"] and meta["codec"]["source"].startswith("fcm-harness")
    assert meta["run_key"]["sample_lists"].keys() == {"cls", "csr"}
    assert (outcome.run_dir / "results.csv").exists()


def test_second_run_does_no_work_and_corrupt_jobs_are_redone(data_root, tmp_path):
    first = _run(data_root, tmp_path / "run", rate_points=[2])
    assert first.ran == 4
    again = _run(data_root, tmp_path / "run", rate_points=[2])
    assert again.ran == 0 and again.skipped == 4
    # corrupt one bitstream and delete one record: exactly those two are redone
    rows = first.table
    (first.run_dir / rows.bitstream_path[0]).write_bytes(b"corrupt")
    next((first.run_dir / "records").rglob("*.json")).unlink()
    third = _run(data_root, tmp_path / "run", rate_points=[2])
    assert third.ran == 2
    pd.testing.assert_frame_equal(third.table[STABLE], first.table[STABLE])


def test_a_run_grown_task_by_task_records_every_task_s_samples(data_root, tmp_path):
    _run(data_root, tmp_path / "run", rate_points=[2], tasks=["cls"])
    _run(data_root, tmp_path / "run", rate_points=[2], tasks=["csr"], limit=1)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["dataset"]["samples"] == {"cls": 2, "csr": 1}
    assert len(meta["invocations"]) == 2


def test_a_run_killed_before_writing_its_table_is_read_from_the_records(data_root, tmp_path):
    import os
    import shutil

    from harness.results import read_table

    run = tmp_path / "run"
    _run(data_root, run, rate_points=[2])
    stale = tmp_path / "results-after-first.csv"
    shutil.copy(run / "results.csv", stale)
    _run(data_root, run, rate_points=[2, 3])
    shutil.copy(stale, run / "results.csv")  # as if killed after the jobs, before the table was rewritten
    past = min(p.stat().st_mtime for p in (run / "records").rglob("*.json")) - 10
    os.utime(run / "results.csv", (past, past))
    table = read_table(run)
    assert len(table) == 8 and set(table.rate_point) == {2, 3}


def test_a_run_dir_of_another_configuration_is_refused(data_root, tmp_path):
    _run(data_root, tmp_path / "run", rate_points=[2])
    with pytest.raises(RunError, match="codec_options"):
        _run(data_root, tmp_path / "run", rate_points=[2], codec_options={"level": "1"})


def test_misbehaving_codecs_give_failed_rows_and_the_run_goes_on(data_root, tmp_path):
    mods = ("plugins_for_tests.misbehaving",)
    garbage = _run(data_root, tmp_path / "g", codec="garbage", plugin_modules=mods, tasks=["cls"])
    assert len(garbage.failures) == 2
    assert "decode: decode returned shape (3, 3), expected (257, 1536)" in garbage.failures[0].error
    crash = _run(data_root, tmp_path / "c", codec="crashes", plugin_modules=mods, tasks=["cls"])
    assert "encode: RuntimeError: encoder exploded" in crash.failures[0].error
    nan = _run(data_root, tmp_path / "n", codec="nanfloat", plugin_modules=mods, tasks=["csr"])
    assert "decode returned NaN or Inf" in nan.failures[0].error
    checked = _run(data_root, tmp_path / "s", codec="selfcheck", plugin_modules=mods, tasks=["cls"])
    assert "check: the decoder disagrees with the encoder" in checked.failures[0].error


def test_bad_inputs_are_refused_before_coding(ctc, tmp_path):
    root = make_root(tmp_path / "d")
    write_feature(root, "dinov2", "cls", "img_b", np.zeros((1, 1, 257, 1535), np.float32))
    with pytest.raises(HarnessError, match=r"img_b.npy: wrong shape for task 'cls'"):
        _run(root, tmp_path / "r", tasks=["cls"])
    (root / "dinov2/cls/feature_test/img_b.npy").unlink()
    with pytest.raises(HarnessError, match=r"img_b.npy: listed sample missing"):
        _run(root, tmp_path / "r", tasks=["cls"])
    with pytest.raises(HarnessError, match=r"unknown task 'clss'; did you mean 'cls'\?"):
        _run(root, tmp_path / "r", tasks=["clss"])
    with pytest.raises(HarnessError, match=r"rate point\(s\) 7 not among zlib's shift values"):
        _run(make_root(tmp_path / "e"), tmp_path / "r2", rate_points=[7])


def test_nan_feature_fails_its_jobs_but_keeps_the_others(tmp_path):
    root = make_root(tmp_path / "d")
    bad = np.zeros((1, 1, 257, 1536), np.float32)
    bad[0, 0, 0, 0] = np.inf
    write_feature(root, "dinov2", "cls", "img_a", bad)
    outcome = _run(root, tmp_path / "r", tasks=["cls"], rate_points=[1])
    assert len(outcome.failures) == 1 and "img_a.npy: contains non-finite values (0 NaN, 1 Inf)" in outcome.failures[0].error
    assert (outcome.table.status == "ok").sum() == 1


def test_samples_file_and_limit(data_root, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("img_b\n# a comment\nQ1\n")
    outcome = _run(data_root, tmp_path / "r", samples_file=ids, rate_points=[3])
    assert sorted(outcome.table["sample"]) == ["Q1", "img_b"]
    limited = _run(data_root, tmp_path / "r2", limit=1, rate_points=[3])
    assert sorted(limited.table["sample"]) == ["Q0", "img_a"]


@pytest.mark.slow
def test_verify_reproduces_and_detects_tampering(data_root, tmp_path):
    outcome = _run(data_root, tmp_path / "run", rate_points=[0, 3])
    results = verify_run(outcome.run_dir, workers=2)
    assert len(results) == 8 and all(r.ok for r in results)
    record = next((outcome.run_dir / "records").rglob("*.json"))
    data = json.loads(record.read_text())
    data["recon_sha256"] = "0" * 64
    record.write_text(json.dumps(data))
    bad = [r for r in verify_run(outcome.run_dir, workers=2) if not r.ok]
    assert len(bad) == 1 and "reconstruction differs" in bad[0].problem


def test_verify_hashes_the_decoder_output_as_coding_did(data_root, tmp_path):
    """A decoder returning int32 frames is canonicalised to uint16 at coding and at verification alike."""
    outcome = _run(data_root, tmp_path / "run", codec="int32frames", plugin_modules=("plugins_for_tests.misbehaving",),
                   tasks=["cls"])
    assert not outcome.failures
    results = verify_run(outcome.run_dir, workers=1, plugin_modules=("plugins_for_tests.misbehaving",))
    assert results and all(r.ok for r in results)


@pytest.mark.slow
def test_parallel_run_gives_the_same_rows(data_root, tmp_path):
    serial = _run(data_root, tmp_path / "s", rate_points=[1, 4])
    parallel = execute(RunRequest(codec="zlib", data_root=data_root, out=tmp_path / "p", jobs=2,
                                  progress=False, rate_points=[1, 4]))
    pd.testing.assert_frame_equal(serial.table[STABLE], parallel.table[STABLE])
