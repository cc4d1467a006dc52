"""The command line as a user meets it: one-line errors, exit codes, resume after a kill."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import make_root, write_feature
from harness.cli import main

HARNESS = [sys.executable, "-m", "harness.cli"]


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plugins_lists_codec_with_version_input_rates_and_source(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "zlib 1.0  family=handcrafted input=frame10 shift: 0, 1, 2, 3, 4" in out
    assert "from fcm-harness" in out and "demo v3" in out


@pytest.mark.parametrize("args,message", [
    (["run", "--codec", "vcc"], "error: unknown codec 'vcc'"),
    (["run", "--codec", "zlib", "--task", "seg2"], "error: unknown task 'seg2'; did you mean 'seg'?"),
    (["run", "--codec", "zlib", "--data-root", "/nonexistent/dir"], "/nonexistent/dir: data root is not a directory"),
    (["run", "--codec", "zlib", "--rate-points", "a,b"], "--rate-points must be numbers"),
])
def test_user_errors_are_one_line_exit_1(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["report", "evaluate", "verify"])
def test_commands_on_a_folder_that_is_not_a_run(capsys, tmp_path, command):
    code, _, err = run_cli(capsys, command, str(tmp_path))
    assert code == 1 and f"{tmp_path}: not a run directory (no run.json)" in err and "Traceback" not in err


def test_bad_features_each_give_one_line(capsys, tmp_path):
    root = make_root(tmp_path / "d")
    feature = root / "dinov2/cls/feature_test/img_a.npy"
    cases = {
        "truncated .npy": lambda: feature.write_bytes(feature.read_bytes()[:1000]),
        "pickled object array": lambda: np.save(feature, np.array([None], dtype=object), allow_pickle=True),
        "wrong shape": lambda: np.save(feature, np.zeros((1, 1, 257, 3), np.float32)),
    }
    for message, damage in cases.items():
        damage()
        code, _, err = run_cli(capsys, "run", "--codec", "zlib", "--data-root", str(root), "--task", "cls",
                               "--out", str(tmp_path / "r"), "--no-progress")
        assert code == 1 and message in err and "img_a.npy" in err and "Traceback" not in err
        write_feature(root, "dinov2", "cls", "img_a", np.zeros((1, 1, 257, 1536), np.float32))


def test_nan_feature_exit_1_naming_the_file(capsys, tmp_path):
    root = make_root(tmp_path / "d")
    bad = np.zeros((1, 1, 257, 1536), np.float32)
    bad[0, 0, 1, 1] = np.nan
    write_feature(root, "dinov2", "cls", "img_a", bad)
    code, _, err = run_cli(capsys, "run", "--codec", "zlib", "--data-root", str(root), "--task", "cls",
                           "--rate-points", "2", "--out", str(tmp_path / "r"), "--no-progress", "--jobs", "1")
    assert code == 1 and "img_a.npy: contains non-finite values (1 NaN, 0 Inf)" in err
    assert (tmp_path / "r" / "results.csv").exists()  # the good sample's row is kept


def test_unwritable_output_directory(capsys, tmp_path, data_root):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root)")
    code, _, err = run_cli(capsys, "run", "--codec", "zlib", "--data-root", str(data_root),
                           "--out", str(locked / "run"))
    assert code == 1 and "not writable" in err


def test_unwritable_output_directory_is_a_file(capsys, tmp_path, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "run", "--codec", "zlib", "--data-root", str(data_root),
                           "--out", str(blocker / "run"))
    assert code == 1 and "output directory is not writable" in err and "Traceback" not in err


def test_preprocess_postprocess_round_trip(capsys, tmp_path, data_root):
    feature = data_root / "dinov2/cls/feature_test/img_a.npy"
    code, out, _ = run_cli(capsys, "preprocess", str(feature), str(tmp_path / "f.yuv"), "--task", "cls")
    assert code == 0 and out.strip() == "width 1536 height 257"
    raw = np.fromfile(tmp_path / "f.yuv", dtype="<u2")
    assert raw.size == 257 * 1536 and raw.max() <= 1023
    code, out, _ = run_cli(capsys, "postprocess", str(tmp_path / "f.yuv"), str(tmp_path / "rec.npy"),
                           "--task", "cls", "--like", str(feature))
    assert code == 0
    rec, orig = np.load(tmp_path / "rec.npy"), np.load(feature)
    assert rec.shape == orig.shape and rec.dtype == np.float32
    step = 40 / 1023
    assert np.all(np.clip(orig, -20, 20) - rec < step + 1e-5)
    (tmp_path / "short.yuv").write_bytes(b"\0" * 10)
    code, _, err = run_cli(capsys, "postprocess", str(tmp_path / "short.yuv"), str(tmp_path / "x.npy"),
                           "--task", "cls", "--like", str(feature))
    assert code == 1 and "short.yuv: has 10 bytes; a 1536x257 uint16 frame has" in err


def test_validate_command(capsys, tmp_path):
    root = make_root(tmp_path / "d")
    code, out, _ = run_cli(capsys, "validate", "--data-root", str(root))
    assert code == 0 and "cls: 2/2 samples valid (ok)" in out and out.strip().endswith("valid")
    (root / "llama3/csr/feature_test/Q1.npy").unlink()
    code, out, _ = run_cli(capsys, "validate", "--data-root", str(root))
    assert code == 1 and "Q1.npy: file not found" in out and "INVALID" in out


def _stable(run_dir: Path) -> pd.DataFrame:
    cols = ["task", "rate_point", "sample", "bytes", "bitstream_sha256", "recon_sha256", "mse", "status"]
    return pd.read_csv(run_dir / "results.csv")[cols]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_rows(tmp_path):
    root = make_root(tmp_path / "d", cls_ids=tuple(f"img_{i}" for i in range(10)))
    args = HARNESS + ["run", "--codec", "zlib", "--data-root", str(root), "--task", "cls", "--jobs", "1",
                      "--no-progress", "-o", "level=9"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((killed / "records").rglob("*.json"))) < 12:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((killed / "records").rglob("*.json")))
    assert 0 < done < 50, "the run must be killed halfway"
    resumed = subprocess.run(args + ["--out", str(killed)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} already done" in resumed.stdout
    clean = tmp_path / "clean"
    subprocess.run(args + ["--out", str(clean)], check=True, capture_output=True)
    pd.testing.assert_frame_equal(_stable(killed), _stable(clean))
    assert len(_stable(killed)) == 50
    verify = subprocess.run(HARNESS + ["verify", str(killed)], capture_output=True, text=True)
    assert verify.returncode == 0 and "50 of 50 bitstreams reproduce" in verify.stdout


@pytest.mark.parametrize("args,message", [
    (["-o", "level=high"], "zlib: option level='high' must be an integer (int 0..9, default '9')"),
    (["--quant-rule", "bogus"], "unknown quantization rule 'bogus'; available: floor, unbiased"),
])
def test_bad_option_values_are_one_line(capsys, tmp_path, data_root, args, message):
    code, _, err = run_cli(capsys, "run", "--codec", "zlib", "--data-root", str(data_root), "--out",
                           str(tmp_path / "r"), *args)
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "run.json").exists()  # nothing recorded: the directory stays usable
