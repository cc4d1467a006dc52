"""Dataset reader, sample lists as released, safe .npy reading, validation."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_EXAMPLE, make_root, write_feature
from harness.dataset import Dataset, parse_sample_list
from harness.errors import DatasetError, FeatureError
from harness.npyio import load_npy
from harness.validate import validate_dataset, write_manifest


@pytest.mark.parametrize("fmt,text,ids", [
    ("name_label", "ILSVRC2012_val_00000293 0\r\nILSVRC2012_val_00000236 1", ["ILSVRC2012_val_00000293", "ILSVRC2012_val_00000236"]),
    ("id", "2007_000323\r\n2007_002400\r\n", ["2007_000323", "2007_002400"]),
    ("nyu_pairs", "bathroom/rgb_00045.jpg bathroom/sync_depth_00045.png 518.8579", ["bathroom_rgb_00045"]),
    ("name_caption", "COCO_val2017_000000397133.jpg A table with pies.\n", ["COCO_val2017_000000397133"]),
    ("arc_jsonl", '{"id": "Mercury_7222460", "question": {}, "answerKey": "B"}', ["Mercury_7222460"]),
])
def test_sample_list_formats(tmp_path, fmt, text, ids):
    path = tmp_path / "list.txt"
    path.write_bytes(text.encode())
    assert parse_sample_list(path, fmt) == ids


def test_bad_sample_list_lines_name_file_and_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("img_a 0\nimg_b\n")
    with pytest.raises(DatasetError, match=r"labels.txt:2: expected '<image name> <label>'"):
        parse_sample_list(path, "name_label")


@pytest.mark.skipif(not SHARED_EXAMPLE.is_dir(), reason="the authors' example lists (shared/) are not beside this checkout")
def test_reads_the_official_example_lists_as_released(ctc, tmp_path):
    ds = Dataset(SHARED_EXAMPLE, ctc)
    counts = {t: len(ds.sample_ids(t)) for t in ctc.tasks}
    assert counts == {"cls": 100, "seg": 20, "dpt": 16, "csr": 100, "tti": 100}
    assert ds.sample_ids("dpt")[0] == "bathroom_rgb_00045"
    assert ds.sample_ids("csr")[0] == "MCAS_2006_9_44"
    assert ds.sample_ids("tti")[0] == "COCO_val2017_000000397133"
    assert ds.sample_ids("cls")[-1] == "ILSVRC2012_val_00000017"  # last line has no newline


def test_sample_list_not_directory_listing_decides(ctc, data_root):
    # an extra feature file that is not listed is ignored
    write_feature(data_root, "dinov2", "cls", "not_listed", np.zeros((1, 1, 257, 1536), np.float32))
    ds = Dataset(data_root, ctc)
    assert [s.id for s in ds.samples("cls")] == ["img_a", "img_b"]


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=True)


def test_npy_errors_are_clear(tmp_path):
    good = tmp_path / "good.npy"
    _save(good, np.ones((2, 3), np.float32))
    assert load_npy(good).shape == (2, 3)
    obj = tmp_path / "obj.npy"
    _save(obj, np.array([{"a": 1}], dtype=object))
    with pytest.raises(FeatureError, match="obj.npy: holds a pickled object array"):
        load_npy(obj)
    short = tmp_path / "short.npy"
    short.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(FeatureError, match="short.npy: truncated .npy"):
        load_npy(short)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(FeatureError, match="junk.npy: not a readable .npy file"):
        load_npy(junk)
    fortran = tmp_path / "f.npy"
    array = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    _save(fortran, array)
    assert np.array_equal(load_npy(fortran), array)


def test_validate_reports_every_problem(ctc, tmp_path):
    root = make_root(tmp_path / "d", cls_ids=("a", "b", "c", "d", "e"))
    write_feature(root, "dinov2", "cls", "b", np.zeros((1, 1, 256, 1536), np.float32))  # wrong shape
    bad = np.zeros((1, 1, 257, 1536), np.float32)
    bad[0, 0, 3, 4] = np.nan
    write_feature(root, "dinov2", "cls", "c", bad)  # NaN
    write_feature(root, "dinov2", "cls", "d", np.zeros((1, 1, 257, 1536), np.float64))  # wrong dtype
    (root / "dinov2/cls/feature_test/e.npy").unlink()  # missing
    report = validate_dataset(Dataset(root, ctc), ["cls", "csr"])
    cls = report.tasks[0]
    assert not report.ok and cls.ok == 1 and cls.listed == 5
    text = "\n".join(cls.problems)
    assert "b.npy: wrong shape for task 'cls': expected shape (1, 1, 257, 1536), got (1, 1, 256, 1536)" in text
    assert "c.npy: contains non-finite values (1 NaN, 0 Inf)" in text
    assert "d.npy: wrong dtype for task 'cls': expected float32, got float64" in text
    assert "e.npy: file not found" in text
    assert report.tasks[1].problems == []


def test_manifest_round_trip_detects_changed_file(ctc, data_root, tmp_path):
    ds = Dataset(data_root, ctc)
    manifest = tmp_path / "manifest.sha256"
    assert write_manifest(ds, ["cls", "csr"], manifest) == 4
    assert validate_dataset(ds, ["cls", "csr"], manifest).ok
    write_feature(data_root, "dinov2", "cls", "img_a", np.ones((1, 1, 257, 1536), np.float32))
    report = validate_dataset(ds, ["cls"], manifest)
    assert "img_a.npy: sha256 differs from the manifest" in report.tasks[0].problems[0]


def test_csr_token_count_is_variable_but_bounded(ctc):
    spec = ctc.task("csr")
    assert spec.check_shape((1, 1, 153, 4096)) is None
    assert spec.check_shape((1, 1, 259, 4096)) is None
    assert "axis 3" not in (spec.check_shape((1, 1, 200, 4095)) or "")
    assert spec.check_shape((1, 1, 200, 4095)) is not None
    seg = ctc.task("seg")
    assert seg.check_shape((3, 1, 1370, 1536)) is None
    assert seg.check_shape((4, 1, 1370, 1536)) is not None
