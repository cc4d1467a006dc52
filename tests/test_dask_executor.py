"""DaskExecutor: same result table as a serial run despite a killed worker; bounded retries;
codecs built once per worker; a killed driver's run resumes."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pytest

from harness.results import read_record
from harness.runner import RunRequest, execute

pytest.importorskip("distributed", reason="dask distributed not installed: pip install 'fcm-harness[cluster]'")

from harness.dask_executor import DaskExecutor  # noqa: E402

HERE = Path(__file__).resolve().parent
PLUGINS = ("plugins_for_tests.dask_plugins",)
STABLE = ["task", "rate_point", "sample", "bytes", "bitstream_sha256", "recon_sha256", "status"]
SAMPLES = 6  # x 5 rate points = 30 jobs (8 x 5 also passes; 6 keeps a margin under 90 s on a busy 2-core box)


def make_data(root: Path, count: int) -> Path:
    """A data root in the official layout with `count` cls features (real CTC shape)."""
    src = root / "dinov2" / "cls" / "source"
    src.mkdir(parents=True)
    ids = [f"s{i:02d}" for i in range(count)]
    (src / "imagenet_selected_label_test.txt").write_text("\n".join(f"{s} {i}" for i, s in enumerate(ids)))
    feats = root / "dinov2" / "cls" / "feature_test"
    feats.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for s in ids:
        np.save(feats / f"{s}.npy", (rng.standard_normal((1, 1, 257, 1536)) * 3).astype(np.float32))
    return root


def request(root: Path, out: Path, **kw) -> RunRequest:
    kw.setdefault("codec", "zlib")
    kw.setdefault("codec_options", {"level": "9"})  # level 9: ~0.4 s per job, slow enough to kill mid-run
    return RunRequest(data_root=root, out=out, progress=False, **kw)


def temp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob(".*.tmp")]


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    # workers are spawned from this process: they inherit the environment and sys.path
    old = os.environ.get("FCM_HARNESS_CACHE")
    os.environ["FCM_HARNESS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    yield
    if old is None:
        os.environ.pop("FCM_HARNESS_CACHE", None)
    else:
        os.environ["FCM_HARNESS_CACHE"] = old


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"), SAMPLES)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The local serial run (SerialExecutor, --jobs 1)."""
    outcome = execute(request(data, tmp_path_factory.mktemp("serial") / "run", jobs=1))
    assert len(outcome.table) == 5 * SAMPLES and not outcome.failures
    return pd.read_csv(outcome.run_dir / "results.csv")[STABLE]


@pytest.mark.slow
def test_a_killed_worker_changes_nothing_in_the_result_table(data, reference, tmp_path):
    out = tmp_path / "dask"
    executor = DaskExecutor(workers=3, retries=2)
    killed: dict = {}
    stop = threading.Event()

    def kill_one_worker_mid_run():
        while not stop.is_set():
            done = len(list((out / "records").rglob("*.json"))) if (out / "records").exists() else 0
            if done >= 6:
                for pid, keys in executor.client.run(__import__("plugins_for_tests.dask_plugins", fromlist=["executing"]).executing).values():
                    if keys:
                        os.kill(pid, signal.SIGKILL)
                        killed.update(pid=pid, keys=keys, done=done)
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    thread.start()
    try:
        outcome = execute(request(data, out), executor=executor)
    finally:
        stop.set()
        thread.join(5)
        executor.close()

    assert killed, "the run finished before a worker could be killed"
    assert killed["done"] < 5 * SAMPLES
    # the killed worker's job was rescheduled and finished by another worker process, unless it
    # finished in the instant between asking the worker what it runs and the kill
    lost = {int(k.rsplit("-", 1)[1]) for k in killed["keys"]}
    assert executor.stats["workers_lost"] == 1
    for i in lost:
        on_killed_worker = executor.ran_on[i].endswith(f":{killed['pid']}")
        assert on_killed_worker != (i in executor.rescheduled), (i, executor.ran_on[i], executor.rescheduled)
    # same rows, same bitstreams and reconstructions, nothing failed, nothing half-written
    assert not outcome.failures and outcome.ran == 5 * SAMPLES
    table = pd.read_csv(out / "results.csv")
    assert not table.duplicated(["task", "rate_point", "sample"]).any()
    pd.testing.assert_frame_equal(table[STABLE].reset_index(drop=True), reference.reset_index(drop=True))
    assert temp_files(out) == []


@pytest.mark.slow
def test_codecs_are_built_once_per_worker_and_a_crashing_job_is_not_retried_forever(data, tmp_path):
    executor = DaskExecutor(workers=2, retries=1)
    try:
        # 1. the codec factory (stand-in for loading a task-head model) runs once per worker process
        ok = execute(request(data, tmp_path / "count", codec="zlibcount", plugin_modules=PLUGINS,
                             codec_options={"level": "1"}), executor=executor)
        assert not ok.failures and ok.ran == 5 * SAMPLES
        calls = executor.client.run(__import__("plugins_for_tests.dask_plugins", fromlist=["executing"]).factory_calls)
        workers_used = {where for where in executor.ran_on.values()}
        assert len(workers_used) == 2 and sorted(calls.values()) == [1, 1]

        # 2. a job that kills its worker every time: bounded retries, then a failed row with the reason
        out = tmp_path / "killer"
        crash = execute(request(data, out, codec="killer", plugin_modules=PLUGINS, limit=1,
                                codec_options={"level": "1"}), executor=executor)
        assert executor.stats["workers_lost"] == 2  # first attempt + 1 retry
        assert [(f.rate_point, f.status) for f in crash.failures] == [(4.0, "failed")]
        assert "KilledWorker" in crash.failures[0].error and "2 times" in crash.failures[0].error
        table = crash.table.set_index("rate_point")
        assert (table.loc[[0.0, 1.0, 2.0, 3.0], "status"] == "ok").all()
        assert table.loc[4.0, "status"] == "failed" and "KilledWorker" in table.loc[4.0, "error"]
        record = read_record(out / "records" / "cls" / "shift4" / "s00.json")
        assert record is not None and record.status == "failed"
        assert temp_files(out) == []
    finally:
        executor.close()


DRIVER = """
import sys
from pathlib import Path
from harness.dask_executor import DaskExecutor
from harness.runner import RunRequest, execute
execute(RunRequest(codec="zlib", data_root=Path(sys.argv[1]), out=Path(sys.argv[2]), progress=False,
                   codec_options={"level": "9"}), executor=DaskExecutor(workers=2))  # the process dies
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_from_the_run_directory(data, reference, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(data), str(out)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and driver.poll() is None:
            if (out / "records").exists() and len(list((out / "records").rglob("*.json"))) >= 6:
                break
            time.sleep(0.05)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()
        children = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    # the driver's worker processes do not outlive it for long (they lose their nanny/scheduler)
    t0 = time.monotonic()
    gone, alive = psutil.wait_procs(children, timeout=15)
    print(f"\n{len(children)} driver children; gone after {time.monotonic() - t0:.1f} s: {len(gone)}")
    for proc in alive:  # clean up so the test run does not leak processes, then fail
        proc.kill()
    assert not alive, f"orphaned worker processes: {[p.pid for p in alive]}"

    done_before = sum(1 for p in (out / "records").rglob("*.json"))
    with DaskExecutor(workers=2) as executor:
        resumed = execute(request(data, out), executor=executor)
    assert resumed.planned == 5 * SAMPLES
    assert resumed.skipped >= min(done_before, 6) and resumed.skipped + resumed.ran == 5 * SAMPLES
    assert not resumed.failures
    table = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(table[STABLE].reset_index(drop=True), reference.reset_index(drop=True))
    assert temp_files(out) == []
