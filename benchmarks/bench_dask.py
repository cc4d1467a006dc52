"""Throughput of the local process pool vs a Dask LocalCluster, and each one's per-job overhead.

Codes N synthetic cls features (1x1x257x1536) with the zlib reference plugin
(level 1) at all five rate points through `harness.runner.execute`, with
  serial  SerialExecutor (in-process, the reference for the runner's own cost)
  pool    harness.executors.LocalPoolExecutor(W)
  dask    DaskExecutor(workers=W)  (LocalCluster, W processes x 1 thread, worker-saturation 1.0)
  dask1.1 the same with Dask's default worker-saturation 1.1 (a queued job pre-assigned per worker)

Reported per executor (median of --repeats runs on a warm executor, fresh run directory each;
repeats interleaved across executors):
  wall       execute() wall time, jobs/s = N / wall
  overhead   per job, worker-seconds not spent inside encode/decode: (W * wall - inside) / N,
             where inside = sum of enc_wall_s + dec_wall_s over the result table (W = 1 for serial)
  dispatch   per job, executor round trip alone: W * wall / M for M no-op jobs (`abs`)
  startup    building the executor and getting all its workers to answer once; close: shutting it down

    python benchmarks/bench_dask.py [--samples 12] [--workers 2] [--repeats 3] [--level 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import tempfile
import time

import numpy as np

from harness.dask_executor import DaskExecutor
from harness.executors import LocalPoolExecutor, SerialExecutor
from harness.runner import RunRequest, execute


def make_data(root: Path, count: int) -> Path:
    src = root / "dinov2" / "cls" / "source"
    src.mkdir(parents=True)
    ids = [f"bench_{i:04d}" for i in range(count)]
    (src / "imagenet_selected_label_bench.txt").write_text("\n".join(f"{s} 0" for s in ids))
    out = root / "dinov2" / "cls" / "feature_test"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s in ids:
        np.save(out / f"{s}.npy", (rng.standard_t(4, (1, 1, 257, 1536)) * 3).astype(np.float32))
    return root


def run_once(executor, root: Path, out: Path, level: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    outcome = execute(RunRequest(codec="zlib", data_root=root, out=out, progress=False,
                                 codec_options={"level": str(level)}), executor=executor)
    wall = time.perf_counter() - start
    assert not outcome.failures and outcome.ran == len(outcome.table)
    return wall, float((outcome.table.enc_wall_s + outcome.table.dec_wall_s).sum()), len(outcome.table)


def measure_all(builders: dict, root: Path, tmp: Path, repeats: int, noops: int, level: int) -> list[dict]:
    """Repeats are interleaved (serial, pool, dask, ... serial, pool, ...) so that load from other
    processes on a shared machine hits every executor alike."""
    rows = {}
    for name, (build, workers) in builders.items():
        t0 = time.perf_counter()
        executor = build()
        list(executor.run(abs, [0] * (2 * workers)))  # all workers up and answering
        rows[name] = {"name": name, "workers": workers, "executor": executor,
                      "startup": time.perf_counter() - t0, "walls": [], "insides": []}
    for r in range(repeats):
        for name, row in rows.items():
            wall, inside, row["jobs"] = run_once(row["executor"], root, tmp / f"{name}-{r}", level)
            row["walls"].append(wall)
            row["insides"].append(inside)
    for row in reversed(rows.values()):  # LIFO: each LocalCluster restores the log level it found
        executor, w, n = row.pop("executor"), row["workers"], row["jobs"]
        start = time.perf_counter()
        list(executor.run(abs, [0] * noops))
        row["dispatch_ms"] = w * (time.perf_counter() - start) / noops * 1e3
        start = time.perf_counter()
        executor.close()
        row["close"] = time.perf_counter() - start
        row["wall"], row["inside"] = statistics.median(row["walls"]), statistics.median(row["insides"])
        row["rate"] = n / row["wall"]
        row["overhead_ms"] = (w * row["wall"] - row["inside"]) / n * 1e3
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noops", type=int, default=400)
    parser.add_argument("--level", type=int, default=1, help="zlib level (9: ~0.4 s per job)")
    args = parser.parse_args()
    w = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_data(tmp / "data", args.samples)
        rows = measure_all({
            "serial": (SerialExecutor, 1),
            "pool": (lambda: LocalPoolExecutor(w), w),
            "dask": (lambda: DaskExecutor(workers=w, verbose=False), w),
            "dask1.1": (lambda: DaskExecutor(workers=w, verbose=False, worker_saturation=1.1), w),
        }, root, tmp, args.repeats, args.noops, args.level)
    n = rows[0]["jobs"]
    print(f"{n} jobs (zlib level {args.level}, cls 1x1x257x1536, 5 rate points), {w} workers, "
          f"median of {args.repeats}; machine: {__import__('os').cpu_count()} cores")
    print(f"{'executor':9} {'W':>2} {'wall s':>7} {'jobs/s':>7} {'inside s':>8} {'overhead/job':>13} "
          f"{'dispatch/job':>13} {'startup s':>9} {'close s':>7}")
    for r in rows:
        print(f"{r['name']:9} {r['workers']:>2} {r['wall']:7.2f} {r['rate']:7.1f} {r['inside']:8.2f} "
              f"{r['overhead_ms']:10.1f} ms {r['dispatch_ms']:10.2f} ms {r['startup']:9.2f} {r['close']:7.2f}")
    by = {r["name"]: r for r in rows}
    print(f"throughput ratio dask/pool: {by['dask']['rate'] / by['pool']['rate']:.2f} "
          f"(dask with saturation 1.1: {by['dask1.1']['rate'] / by['pool']['rate']:.2f}); "
          f"pool/serial: {by['pool']['rate'] / by['serial']['rate']:.2f}, "
          f"dask/serial: {by['dask']['rate'] / by['serial']['rate']:.2f}")
    print("walls per repeat: " + "; ".join(f"{r['name']} " + ", ".join(f"{x:.2f}" for x in r["walls"])
                                          for r in rows))


if __name__ == "__main__":
    main()
