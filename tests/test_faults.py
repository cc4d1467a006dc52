"""Faults end cleanly: disk full, read-only outputs, dead pool workers, malformed files, two runs
on one --out. One line naming the file, exit 1, nothing already finished lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
import subprocess

import pytest

from conftest import make_root
from harness.cli import main
from harness.results import is_complete, read_record

CSR_RUN = ["run", "-c", "zlib", "-t", "csr", "-j", "1", "--no-progress", "--no-eval"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@contextlib.contextmanager
def tmpfs(where: Path, size: str, options: str = ""):
    """A small tmpfs at `where` (root only); skips the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


class _Budget:
    """Wraps the write layer's files: ENOSPC once `left` bytes are used up (and from then on)."""

    def __init__(self, left: int, error: int = errno.ENOSPC) -> None:
        self.left, self.error = left, error
        self.real = os.fdopen

    def fdopen(self, fd, *args, **kw):
        fh = self.real(fd, *args, **kw)
        budget = self

        class Limited:
            def __getattr__(self, name):
                return getattr(fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def write(self, data):
                budget.left -= len(data)
                if budget.left < 0:
                    raise OSError(budget.error, os.strerror(budget.error))
                return fh.write(data)

        return Limited()


def ok_records(out: Path) -> list:
    records = [read_record(p) for p in (out / "records").rglob("*.json")]
    return [r for r in records if r is not None and r.status == "ok"]


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.tmp")]


@pytest.mark.parametrize("disk,error", [("tmpfs", errno.ENOSPC), ("mocked", errno.ENOSPC), ("mocked", errno.EROFS)])
def test_a_full_disk_ends_in_one_line_naming_the_file_and_loses_nothing(capsys, tmp_path, monkeypatch, disk, error):
    root = make_root(tmp_path / "data")
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs":
            out = stack.enter_context(tmpfs(tmp_path / "disk", "128k")) / "run"
        else:
            out = tmp_path / "run"
            budget = _Budget(128 * 1024, error)
            monkeypatch.setattr(os, "fdopen", budget.fdopen)
        code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out)
        line = one_line_error(err)
        assert code == 1 and os.strerror(error) in line and f"{out}{os.sep}" in line
        assert "run the same command again" in line
        finished = ok_records(out)
        assert finished and all(is_complete(out, r) for r in finished)
        assert not [r for r in map(read_record, (out / "records").rglob("*.json")) if r and r.status != "ok"], \
            "a full or read-only disk is not the codec's fault: no failed rows"
        assert temp_files(out) == []
        cut_short = json.loads((out / "run.json").read_text())["invocations"][-1]
        # counted where run.json could still be written; never "ran" more than really ran
        assert cut_short.get("ran", len(finished)) == len(finished) and cut_short.get("failed", 0) == 0

        # room again: the same command resumes and redoes nothing already finished
        if disk == "tmpfs":
            remount(out.parent, "size=4m")
        else:
            monkeypatch.setattr(os, "fdopen", budget.real)
        code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out)
        assert code == 0, err
        last = json.loads((out / "run.json").read_text())["invocations"][-1]
        assert last["skipped"] == len(finished) and last["ran"] == 10 - len(finished)


def test_a_read_only_output_is_one_line_naming_the_directory(capsys, tmp_path):
    root = make_root(tmp_path / "data")
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "run"
        code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out, "--limit", "1")
        assert code == 0, err
        remount(disk, "ro")
        (root / "llama3/csr/feature_test/Q1.npy").touch()  # nothing changes the key: a resume would only add
        code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out)
        line = one_line_error(err)
        assert code == 1 and str(out) in line and "Read-only file system" in line


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_honour_the_umask(tmp_path, umask):
    from harness.npyio import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.csv", "a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o666 & ~umask


KILLERS = ("plugins_for_tests.pool_killers",)


def _pool_run(root, out, codec, executor=None, **kw):
    from harness.runner import RunRequest, execute

    return execute(RunRequest(codec=codec, data_root=root, out=out, jobs=2, tasks=["csr"], limit=1,
                              plugin_modules=KILLERS, progress=False, **kw), executor=executor)


@pytest.mark.slow  # a few pool start-ups (~7 s)
def test_a_worker_killed_once_has_its_job_redone_and_the_run_goes_on(tmp_path):
    root = make_root(tmp_path / "data")
    marker = tmp_path / "killed-once"
    outcome = _pool_run(root, tmp_path / "run", "killonce", codec_options={"marker": str(marker)})
    assert marker.exists(), "the codec never killed its worker"
    assert outcome.ran == 5 and not outcome.failures
    assert (outcome.table.status == "ok").all() and len(outcome.table) == 5
    last = json.loads((tmp_path / "run" / "run.json").read_text())["invocations"][-1]
    assert (last["ran"], last["failed"]) == (5, 0)


@pytest.mark.slow  # a few pool start-ups (~7 s)
def test_a_job_that_always_kills_its_worker_ends_as_a_failed_row_after_bounded_retries(tmp_path):
    from harness.executors import LocalPoolExecutor

    root = make_root(tmp_path / "data")
    out = tmp_path / "run"
    executor = LocalPoolExecutor(2, retries=1)
    try:
        outcome = _pool_run(root, out, "killer", executor=executor)
    finally:
        executor.close()
    assert executor.stats["workers_lost"] == 2 and executor.stats["given_up"] == 1  # first try + 1 retry
    assert [(f.rate_point, f.status) for f in outcome.failures] == [(4.0, "failed")]
    assert "worker process died" in outcome.failures[0].error and "2 times" in outcome.failures[0].error
    table = outcome.table.set_index("rate_point")
    assert (table.loc[[0.0, 1.0, 2.0, 3.0], "status"] == "ok").all()
    assert read_record(out / "records" / "csr" / "shift4" / "Q0.json").status == "failed"
    last = json.loads((out / "run.json").read_text())["invocations"][-1]
    assert (last["ran"], last["failed"]) == (5, 1)
    assert temp_files(out) == []


# ------------------------------------------------------------------ malformed files: one line naming the file

def _npy_with_header(path: Path, shape, data: bytes = b"\0" * 64) -> Path:
    import numpy as np

    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        fh.write(data)
    return path


@pytest.mark.parametrize("shape", [(2**40, 2**40, 1, 16), (1, 1, 2**61, 4096), (1, 1, -5, 4096)])
def test_an_overflowing_or_absurd_npy_header_is_one_line(tmp_path, shape):
    from harness.errors import FeatureError
    from harness.npyio import load_npy, read_npy_header

    path = _npy_with_header(tmp_path / "x.npy", shape)
    for read in (read_npy_header, load_npy):
        with pytest.raises(FeatureError, match=f"^{path}: "):
            read(path)


def test_an_overflowing_feature_through_the_cli(capsys, tmp_path):
    root = make_root(tmp_path / "data")
    _npy_with_header(root / "llama3/csr/feature_test/Q0.npy", (1, 1, 2**61, 4096))
    code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", tmp_path / "run")
    assert code == 1 and "Q0.npy" in one_line_error(err)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished csr run (one sample, two rate points) with a metrics.csv; copied per test."""
    from harness.runner import RunRequest, execute

    base = tmp_path_factory.mktemp("small")
    root = make_root(base / "data")
    out = execute(RunRequest(codec="zlib", data_root=root, out=base / "run", jobs=1, tasks=["csr"], limit=1,
                             rate_points=[2, 4], progress=False)).run_dir
    (out / "metrics.csv").write_text("task,rate_point,metric,value,primary\ncsr,orig,acc,0.5,True\n"
                                     "csr,2,acc,0.5,True\ncsr,4,acc,0.4,True\n")
    return out


@pytest.fixture
def run_copy(small_run, tmp_path):
    import shutil

    return Path(shutil.copytree(small_run, tmp_path / "run"))


GARBAGE = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20,
    "empty": b"",
    "other columns": b"a,b\n1,2\n",
    "ragged": b"task,rate_point\ncsr,1,2,3,4\n\"unclosed\n",
}


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("table", ["results.csv", "metrics.csv"])
def test_a_malformed_results_or_metrics_table_is_one_line(capsys, run_copy, table, kind):
    (run_copy / table).write_bytes(GARBAGE[kind])
    code, _, err = run_cli(capsys, "compare", run_copy, run_copy)
    assert code == 1 and f"{run_copy / table}: " in one_line_error(err)


def test_a_non_number_in_a_table_column_is_one_line_naming_the_column(capsys, run_copy):
    text = (run_copy / "metrics.csv").read_text().replace("0.4", "zero point four")
    (run_copy / "metrics.csv").write_text(text)
    code, _, err = run_cli(capsys, "compare", run_copy, run_copy)
    line = one_line_error(err)
    assert code == 1 and f"{run_copy / 'metrics.csv'}: " in line and "'value'" in line


@pytest.mark.parametrize("content", ["[]", '"a run"', '{"codec": "zlib"}', '{"invocations": 3, "run_key": []}',
                                     "{", "\xff\xfe"])
@pytest.mark.parametrize("command", ["report", "verify", "compare", "run"])
def test_a_malformed_run_json_is_one_line(capsys, small_run, run_copy, content, command):
    (run_copy / "run.json").write_bytes(content.encode("latin-1"))
    args = {"report": ["report", run_copy], "verify": ["verify", run_copy, "-j", "1"],
            "compare": ["compare", run_copy, run_copy, "--on", "mse"],
            "run": [*CSR_RUN, "--data-root", small_run.parent / "data", "--out", run_copy]}[command]
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and f"{run_copy / 'run.json'}: " in one_line_error(err)


@pytest.mark.parametrize("sheet", [
    "anchor,task\nbadanchor,csr\n",  # columns missing
    "anchor,task,rate_index,bpfp,metric,metric_name,higher_is_better,mse,source\n"
    "badanchor,csr,0,lots,0.5,acc,True,1.0,x\n",  # a word where a number belongs
])
def test_a_malformed_anchor_sheet_is_one_line(capsys, run_copy, tmp_path, monkeypatch, sheet):
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "bad.csv").write_text(sheet)
    monkeypatch.setenv("FCM_HARNESS_ANCHORS", str(anchors))
    code, _, err = run_cli(capsys, "compare", "badanchor", run_copy, "--on", "mse")
    assert code == 1 and f"{anchors / 'bad.csv'}: " in one_line_error(err)


# ------------------------------------------------------------------ pictures are inert

TEX_LIKE = ["$x$ y$", "a$_$b", r"codec $\foo$", "x$^$"]


@pytest.mark.parametrize("label", TEX_LIKE)
def test_curve_labels_are_never_parsed_as_tex(tmp_path, label):
    import pandas as pd

    from harness.curves import Curve
    from harness.figures import curve_plot

    points = pd.DataFrame({"task": ["csr"] * 2, "bpfp": [1.0, 2.0], "mse": [0.2, 0.1]})
    written = curve_plot("csr", [Curve(label, points, "test")], "mse", f"MSE {label}", tmp_path / "f")
    assert [p.suffix for p in written] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in written)


def test_a_report_of_a_codec_whose_name_looks_like_tex_renders(capsys, run_copy):
    meta = json.loads((run_copy / "run.json").read_text())
    meta["codec"]["name"] = "zlib a$_$b"  # a third-party codec's name is a curve label of the report
    (run_copy / "run.json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "report", run_copy)
    assert code == 0, err
    pictures = list((run_copy / "report").rglob("*.png"))
    assert pictures and all(p.stat().st_size > 0 for p in pictures)


def test_figures_are_written_atomically_and_honour_the_umask(tmp_path, monkeypatch):
    import pandas as pd

    from harness.curves import Curve
    from harness.figures import curve_plot

    (tmp_path / "f.png").write_bytes(b"the previous picture")
    points = pd.DataFrame({"task": ["csr"] * 2, "bpfp": [1.0, 2.0], "mse": [0.2, 0.1]})

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the picture is drawn, but cannot be stored
    with pytest.raises(Exception, match=f"{tmp_path / 'f.png'}: .*No space left on device"):
        curve_plot("csr", [Curve("c", points, "test")], "mse", "MSE", tmp_path / "f")
    assert (tmp_path / "f.png").read_bytes() == b"the previous picture" and temp_files(tmp_path) == []
    monkeypatch.undo()
    old = os.umask(0o027)
    try:
        written = curve_plot("csr", [Curve("c", points, "test")], "mse", "MSE", tmp_path / "f")
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in written} == {0o640}


# ------------------------------------------------------------------ dataset builds

SLOW_BUILD = """
import time
from harness.ctc import load_ctc
from harness.datasets import DatasetSpec
from harness.sources import prepare_builtin

def slow(ctc, root, progress):
    (root / "half.npy").write_bytes(b"x" * 1000)
    print("started", flush=True)
    time.sleep(60)

prepare_builtin(DatasetSpec("slow", "test", slow), load_ctc(), progress=False)
"""


def test_the_staging_folder_of_a_killed_dataset_build_is_removed_by_the_next_build(tmp_path, monkeypatch):
    import sys

    from harness.ctc import load_ctc
    from harness.datasets import DatasetSpec
    from harness.sources import prepare_builtin

    monkeypatch.setenv("FCM_HARNESS_CACHE", str(tmp_path / "cache"))
    datasets = tmp_path / "cache" / "datasets"
    builder = subprocess.Popen([sys.executable, "-c", SLOW_BUILD], stdout=subprocess.PIPE)
    try:
        assert builder.stdout.readline().strip() == b"started"
        staging = [p for p in datasets.iterdir() if p.is_dir()]
        assert [p.name for p in staging] == [f"slow-v1.tmp-{builder.pid}"]
        from harness.sources import remove_dead_builds

        remove_dead_builds(datasets / "slow-v1")
        assert staging[0].is_dir(), "a build still running keeps its folder"
    finally:
        builder.kill()
        builder.wait()
        builder.stdout.close()

    def quick(ctc, root, progress):
        (root / "done.txt").write_text("ok")

    made = prepare_builtin(DatasetSpec("slow", "test", quick), load_ctc(), progress=False)
    assert (made / "done.txt").read_text() == "ok"
    assert sorted(p.name for p in datasets.iterdir()) == ["slow-v1"]


# ------------------------------------------------------------------ two runs on one --out

HOLD_RUN_LOCK = """
import sys, time
from pathlib import Path
from harness.locks import exclusive
from harness.runner import RUN_LOCK
with exclusive(Path(sys.argv[1]) / RUN_LOCK):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(capsys, tmp_path):
    import sys

    root = make_root(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-c", HOLD_RUN_LOCK, str(out)], stdout=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == b"held"
        code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out, "--limit", "1")
        line = one_line_error(err)
        assert code == 1 and str(out) in line and f"pid {first.pid}" in line and "--out" in line
        assert not (out / "records").exists(), "the refused run touched nothing"
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
    code, _, err = run_cli(capsys, *CSR_RUN, "--data-root", root, "--out", out, "--limit", "1")
    assert code == 0, err  # the lock of a dead run is free


def test_log_axes_under_plain_text_show_numbers_not_raw_mathtext():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.figures import plain_log_ticks, plain_text

    with plain_text():
        fig, ax = plt.subplots()
        ax.plot([0.01, 0.1, 1.0], [1, 2, 3])
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)]
        plt.close(fig)
    assert any(labels) and not any("$" in label or "mathdefault" in label for label in labels)


def _tick_labels(xs: list[float]) -> tuple[list[str], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.figures import plain_log_ticks, plain_text

    with plain_text():
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.plot(xs, range(len(xs)))
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        fig.canvas.draw()
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
        shown_minor = [t for t in ax.get_xticklabels(minor=True) if low <= t.get_position()[0] <= high]
        plt.close(fig)
    return [t.get_text() for t in shown], [t.get_text() for t in shown_minor if t.get_text()]


def test_a_wide_log_axis_labels_decades_only_and_a_narrow_one_its_twos_and_fives():
    major, minor = _tick_labels([0.015, 0.2, 3.0, 9.0])  # three decades: labels between would collide
    assert {"0.1", "1"} <= set(major) <= {"0.01", "0.1", "1", "10"}, major
    assert minor == []
    major, minor = _tick_labels([0.3, 1.0, 3.0])  # one decade: 0.5, 2 help
    assert "1" in major and {"0.5", "2"} <= set(minor), (major, minor)
