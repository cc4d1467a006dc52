"""The runner's own cost per job, and throughput with --jobs 2 vs --jobs 1.

Codes N synthetic cls features (1x1x257x1536) with the zlib reference plugin
at all five rate points, into fresh run directories. Overhead per job = wall
time of the run minus the time spent inside encode and decode, divided by the
number of jobs (it includes loading the feature, CTC pre/post-processing,
hashing, MSE and the atomic writes). Worker start-up is included in the
--jobs 2 wall time.

    python benchmarks/bench_runner.py [--samples 12]
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time

import numpy as np

from harness.runner import RunRequest, execute


def make_root(root: Path, count: int) -> None:
    src = root / "dinov2" / "cls" / "source"
    src.mkdir(parents=True)
    ids = [f"bench_{i:04d}" for i in range(count)]
    (src / "imagenet_selected_label_bench.txt").write_text("\n".join(f"{s} 0" for s in ids))
    rng = np.random.default_rng(0)
    out = root / "dinov2" / "cls" / "feature_test"
    out.mkdir(parents=True)
    for s in ids:
        np.save(out / f"{s}.npy", (rng.standard_t(4, (1, 1, 257, 1536)) * 3).astype(np.float32))


def timed_run(root: Path, out: Path, jobs: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    outcome = execute(RunRequest(codec="zlib", data_root=root, out=out, jobs=jobs, progress=False,
                                 codec_options={"level": "1"}))
    wall = time.perf_counter() - start
    inside = float((outcome.table.enc_wall_s + outcome.table.dec_wall_s).sum())
    return wall, inside, len(outcome.table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_root(root, args.samples)
        wall1, inside1, n = timed_run(root, Path(tmp) / "run1", 1)
        wall2, _, _ = timed_run(root, Path(tmp) / "run2", 2)
        resume_start = time.perf_counter()
        timed_run(root, Path(tmp) / "run1", 1)
        resume = time.perf_counter() - resume_start
    print(f"{n} jobs (zlib level 1, cls 257x1536)")
    print(f"--jobs 1: {wall1:.2f} s wall, {inside1:.2f} s inside encode/decode")
    print(f"runner overhead per job: {(wall1 - inside1) / n * 1e3:.1f} ms")
    print(f"--jobs 2: {wall2:.2f} s wall; throughput ratio jobs2/jobs1: {wall1 / wall2:.2f}x")
    print(f"resume with everything done: {resume:.2f} s for {n} jobs")


if __name__ == "__main__":
    main()
