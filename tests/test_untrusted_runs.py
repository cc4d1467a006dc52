"""Run directories and sample lists are untrusted input: crafted records, tables and files are
refused with one line naming the file and the field, nothing is read or written outside the run,
and nothing is silently dropped."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import make_root, write_feature
from harness import schemas
from harness.cli import main
from harness.dataset import check_sample_id
from harness.errors import DatasetError
from harness.runner import RunRequest, execute

HARNESS = [sys.executable, "-m", "harness.cli"]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    """A zlib run of two demo cls samples at two rate points, with task metrics."""
    out = tmp_path_factory.mktemp("evaluated") / "run"
    execute(RunRequest(codec="zlib", tasks=["cls"], limit=2, rate_points=[0, 3], out=out, jobs=1, progress=False))
    assert main(["evaluate", str(out)]) == 0
    return out


@pytest.fixture
def run(evaluated_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(evaluated_run, copy)
    return copy


def records(run: Path) -> list[Path]:
    return sorted((run / "records").rglob("*.json"))


def edit_record(path: Path, **fields) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def one_line_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 1, err
    messages = [line for line in err.splitlines() if line.startswith("error:")]  # beside progress bars
    assert "Traceback" not in err and len(messages) == 1, err
    return messages[0]


def drop_table(run: Path) -> None:
    """Without results.csv the records are read: the attack goes through them."""
    (run / "results.csv").unlink()


@pytest.mark.parametrize("command", ["evaluate", "verify", "report"])
def test_a_traversal_sample_id_in_a_record_is_refused(capsys, run, tmp_path, command):
    drop_table(run)
    edit_record(records(run)[0], sample="../../../outside")
    argv = [command, str(run)] + (["--out", str(tmp_path / "rep")] if command == "report" else [])
    err = one_line_error(capsys, *argv)
    assert str(records(run)[0]) in err and "'sample'" in err
    assert not list(tmp_path.glob("outside*"))


def test_a_traversal_hash_cannot_write_outside_the_run(capsys, run, tmp_path):
    # the hash names the prediction cache file: /../../X must not become a path
    drop_table(run)
    shutil.rmtree(run / "predictions")
    edit_record(records(run)[0], bitstream_sha256="/../../../../X" + "0" * 50)
    err = one_line_error(capsys, "evaluate", str(run))
    assert "'bitstream_sha256'" in err
    assert not (tmp_path / "X").exists() and not list(tmp_path.rglob("X*.npy"))


@pytest.mark.parametrize("path", ["/etc/hostname", "bitstreams/../../elsewhere.bin", "records/cls/x.json"])
def test_a_bitstream_path_other_than_the_harness_own_is_refused(capsys, run, path):
    drop_table(run)
    edit_record(records(run)[0], bitstream_path=path)
    err = one_line_error(capsys, "evaluate", str(run))
    assert "'bitstream_path'" in err and str(records(run)[0]) in err


def test_an_empty_record_is_named_not_dropped(capsys, run):
    drop_table(run)
    records(run)[1].write_bytes(b"")
    for command in ("verify", "evaluate"):
        err = one_line_error(capsys, command, str(run))
        assert str(records(run)[1]) in err and "empty record" in err


def test_a_record_swapped_into_another_job_s_place_is_refused(capsys, run):
    drop_table(run)
    first, second = records(run)[0], records(run)[1]
    first.write_bytes(second.read_bytes())
    err = one_line_error(capsys, "verify", str(run))
    assert str(first) in err and "but sits at" in err


def test_duplicated_rows_in_results_csv_are_refused(capsys, run):
    table = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    pd.concat([table, table.iloc[[0]]]).to_csv(run / "results.csv", index=False)
    err = one_line_error(capsys, "evaluate", str(run))
    assert str(run / "results.csv") in err and "listed twice" in err


def test_a_replaced_bitstream_is_refused_even_with_cached_predictions(capsys, run):
    assert list((run / "predictions").rglob("*.npy"))  # the evaluation cached its predictions
    record = json.loads(records(run)[0].read_text())
    path = run / record["bitstream_path"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    err = one_line_error(capsys, "evaluate", str(run))
    assert str(path) in err and "differ from the sha256" in err


@pytest.mark.slow
def test_a_fifo_bitstream_neither_hangs_verify_nor_a_resumed_run(run, tmp_path):
    record = json.loads(records(run)[0].read_text())
    path = run / record["bitstream_path"]
    path.unlink()
    os.mkfifo(path)
    verify = subprocess.run(HARNESS + ["verify", str(run)], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 1 and "not a regular file" in verify.stdout + verify.stderr


@pytest.mark.slow
def test_a_fifo_bitstream_is_redone_on_resume(data_root, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--codec", "zlib", "--data-root", str(data_root), "--task", "cls", "--rate-points", "0",
            "--out", str(out), "--no-progress", "--no-eval"]
    assert main(args) == 0
    victim = next((out / "bitstreams").rglob("*.bin"))
    victim.unlink()
    os.mkfifo(victim)
    resumed = subprocess.run(HARNESS + args, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 run" in resumed.stdout and victim.is_file()


def test_a_bitstream_link_out_of_the_run_is_refused(capsys, run, tmp_path):
    record = json.loads(records(run)[0].read_text())
    path = run / record["bitstream_path"]
    outside = tmp_path / "outside.bin"
    outside.write_bytes(path.read_bytes())  # same bytes: only the place is wrong
    path.unlink()
    path.symlink_to(outside)
    err = one_line_error(capsys, "evaluate", str(run))
    assert "outside" in err or "link" in err


@pytest.mark.parametrize("sample_id,message", [
    ("img\n", "not a safe file name"),
    ("a/b", "not a safe file name"),
    ("..", "not a safe file name"),
    ("x" * 201, "201 characters long; ids become file names, so at most 200"),
])
def test_unsafe_sample_ids_are_refused_with_the_reason(sample_id, message):
    with pytest.raises(DatasetError, match=message):
        check_sample_id(sample_id, "list.txt")


def test_ids_of_the_longest_allowed_length_run(tmp_path):
    long_id = "s" * 200
    root = make_root(tmp_path / "d", cls_ids=(long_id,))
    assert main(["run", "--codec", "zlib", "--data-root", str(root), "--task", "cls", "--rate-points", "0",
                 "--out", str(tmp_path / "r"), "--no-progress", "--no-eval"]) == 0


def test_analyze_refuses_ids_that_run_refuses(capsys, tmp_path):
    root = make_root(tmp_path / "d", cls_ids=("ok",))
    listing = next((root / "dinov2" / "cls" / "source").glob("*.txt"))
    listing.write_text("ok 0\n../../etc/x 1\n")
    err = one_line_error(capsys, "analyze", "--data-root", str(root), "--task", "cls", "--out", str(tmp_path / "a"))
    assert "not a safe file name" in err


def test_a_changed_feature_of_the_same_size_redoes_exactly_its_jobs(tmp_path):
    root = make_root(tmp_path / "d", cls_ids=("img_a", "img_b", "img_c"))
    out = tmp_path / "run"
    request = RunRequest(codec="zlib", data_root=root, tasks=["cls"], rate_points=[0, 2], out=out, jobs=1,
                         progress=False)
    first = execute(request)
    assert first.ran == 6
    before = pd.read_csv(out / "results.csv").set_index(["sample", "rate_point"])
    feature = np.load(root / "dinov2" / "cls" / "feature_test" / "img_b.npy")
    write_feature(root, "dinov2", "cls", "img_b", (feature[..., ::-1] * 0.5).copy())  # same size, new content
    second = execute(request)
    assert (second.skipped, second.ran) == (4, 2)
    after = pd.read_csv(out / "results.csv").set_index(["sample", "rate_point"])
    assert (after.loc["img_b"].feature_sha256 != before.loc["img_b"].feature_sha256).all()
    assert (after.loc[["img_a", "img_c"]].bitstream_sha256 == before.loc[["img_a", "img_c"]].bitstream_sha256).all()
    third = execute(request)
    assert third.ran == 0  # the digest cache holds the new content's hash


def test_a_feature_replaced_with_its_old_mtime_is_hashed_again(tmp_path):
    import os
    from harness.feature_hashes import FeatureHashes
    path = tmp_path / "f.npy"
    np.save(path, np.zeros(8, np.float32))
    cache = FeatureHashes(tmp_path / "cache.json")
    first = cache.digest(path)
    stat = os.stat(path)
    np.save(path, np.ones(8, np.float32))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime set back, as cp -p / touch -r do
    assert os.stat(path).st_mtime_ns == stat.st_mtime_ns and os.stat(path).st_size == stat.st_size
    assert cache.digest(path) != first  # the changed ctime gives it away


def test_folders_linked_out_of_the_run_are_refused_before_writing(run, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    shutil.move(str(run / "predictions"), outside)
    (run / "predictions").symlink_to(outside)
    before = sorted(p.name for p in outside.rglob("*"))
    err = one_line_error(capsys, "evaluate", str(run))
    assert "predictions: a link leading outside the run directory" in err
    assert sorted(p.name for p in outside.rglob("*")) == before  # nothing written there
    err = one_line_error(capsys, "run", "--codec", "zlib", "--task", "cls", "--limit", "2", "--rate-points", "0,3",
                         "--out", str(run), "--no-progress")
    assert "a link leading outside the run directory" in err


def test_files_of_a_newer_schema_are_refused_naming_the_file(run, capsys, tmp_path):
    meta = json.loads((run / "run.json").read_text())
    assert meta["schema"] == schemas.RUN_JSON
    record = records(run)[0]
    assert json.loads(record.read_text())["schema"] == 1
    assert "schema" in pd.read_csv(run / "results.csv").columns

    edit_record(record, schema=2)
    err = one_line_error(capsys, "verify", str(run))
    assert record.name in err and "schema 2, written by a newer harness" in err

    edit_record(record, schema=1)
    table = (run / "results.csv").read_text().replace(",1\n", ",7\n", 1)
    (run / "results.csv").write_text(table)
    os.utime(run / "results.csv")  # newer than the records: the table is what is read
    err = one_line_error(capsys, "report", str(run))
    assert "results.csv:2" in err and "schema 7" in err

    meta["schema"] = "two"
    (run / "run.json").write_text(json.dumps(meta))
    err = one_line_error(capsys, "evaluate", str(run))
    assert "run.json" in err and "is not a version number" in err


def test_an_anchor_sheet_of_a_newer_schema_is_refused(tmp_path, monkeypatch, capsys):
    from harness.curves import load_anchor
    sheet = pd.read_csv(Path(__file__).resolve().parents[1] / "anchors" / "paper-table3.csv")
    sheet["anchor"] = "future-anchor"
    sheet["schema"] = 2
    (tmp_path / "future.csv").write_text(sheet.to_csv(index=False))
    monkeypatch.setenv("FCM_HARNESS_ANCHORS", str(tmp_path))
    with pytest.raises(Exception, match=r"future.csv: an anchor sheet of schema 2, written by a newer harness"):
        load_anchor("future-anchor")


@pytest.mark.parametrize("section, field, value, message", [
    ("run_key", "codec_options", {"level": 9}, "field 'run_key.codec_options' must map names to strings"),
    ("dataset", "synthetic", "yes", "field 'dataset.synthetic' must be true or false"),
    ("codec", "input_kind", 7, "field 'codec.input_kind' must be a string"),
    ("run_key", "quant_rule", ["floor"], "field 'run_key.quant_rule' must be a string"),
])
@pytest.mark.parametrize("command", ["verify", "evaluate"])
def test_run_json_fields_of_the_wrong_type_are_one_line(run, capsys, command, section, field, value, message):
    meta = json.loads((run / "run.json").read_text())
    meta[section][field] = value
    (run / "run.json").write_text(json.dumps(meta))
    assert one_line_error(capsys, command, str(run)).endswith(f"{run / 'run.json'}: {message}, found {value!r:.60}")
