"""Re-decoding a run: one fresh process per bitstream (the old path) vs the decode pool.

Codes the mini dataset with zlib (and klt, if its mini models are there) into a scratch run, then
decodes every bitstream from its bytes as `harness verify` and the cross-check do:

    old   ProcessPoolExecutor(max_tasks_per_child=1): a fresh interpreter per bitstream, which
          imports the harness and the plugins and builds the codec each time
    pool  harness.decode_pool: decode-only workers reused across bitstreams (memory cap, timeout)

Per-bitstream overhead = wall x workers / bitstreams - the codec's own mean decode time (measured
inside the worker around `codec.decode`). Goal: overhead <= 2 x decode + 20 ms. The old path is timed
on the first --old-limit bitstreams only (it is slow; per-bitstream figures are comparable). Run both
in one invocation on an otherwise quiet machine and quote the ratios.

    python benchmarks/bench_decode.py [--codec zlib --codec klt] [--workers 2] [--old-limit 30]
                                      [--klt-models DIR | --train-klt]

klt needs trained mini models (`harness train --codec klt --dataset mini --task sal`, and `--task lm`;
-o models=DIR, $FCM_KLT_MODELS or ./checkpoints); without them it is skipped, or --train-klt trains
them into the scratch folder first (seconds).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

from harness.decode_pool import DecodeJob, DecodeResult, decode_and_hash, decode_jobs
from harness.runner import RunRequest, execute
from harness.verify import verify_jobs

MINI_TASKS = ("sal", "lm")


def old_path(jobs: list[DecodeJob], workers: int) -> tuple[float, list[DecodeResult]]:
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        results = list(pool.map(decode_and_hash, jobs))
    return time.perf_counter() - start, results


def new_path(jobs: list[DecodeJob], workers: int) -> tuple[float, list[DecodeResult]]:
    start = time.perf_counter()
    results = decode_jobs(jobs, workers)
    return time.perf_counter() - start, results


def klt_models(args: argparse.Namespace, scratch: Path) -> Path | None:
    """A models folder with every mini task's klt model, trained here if --train-klt; else None."""
    if args.train_klt:
        root = scratch / "klt-models"
        for task in MINI_TASKS:
            subprocess.run([sys.executable, "-m", "harness.cli", "train", "--codec", "klt", "--dataset", "mini",
                            "--task", task, "--out", str(root / task)], check=True, capture_output=True)
        return root
    root = Path(args.klt_models or os.environ.get("FCM_KLT_MODELS") or "checkpoints")
    return root if all((root / task).is_dir() and any((root / task).iterdir()) for task in MINI_TASKS) else None


def bench(codec: str, options: dict[str, str], scratch: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    run = execute(RunRequest(codec=codec, dataset="mini", out=scratch / f"run-{codec}", jobs=args.workers,
                             progress=False, codec_options=options)).run_dir
    print(f"\n{codec}: coded the mini dataset in {time.perf_counter() - start:.1f} s ({run})")
    jobs = verify_jobs(run)
    subset = jobs[:args.old_limit]
    rows = []
    for workers in sorted({1, args.workers}):
        new_wall, new = new_path(jobs, workers)
        old_wall, old = old_path(subset, workers)
        if not all(r.ok for r in new + old):
            bad = next(r for r in new + old if not r.ok)
            raise SystemExit(f"{codec}: a decode failed: {bad.label}: {bad.problem}")
        decode = statistics.fmean(r.decode_s for r in new)
        first_decodes = statistics.fmean(r.decode_s for r in old)  # each one a codec's first decode
        rows.append((workers, decode, first_decodes, old_wall, len(subset), new_wall, len(jobs),
                     len({r.worker_pid for r in new})))
    print(f"{len(jobs)} bitstreams; codec's own decode (reused codec) "
          f"{rows[0][1] * 1e3:.2f} ms/bitstream, in a fresh process {rows[0][2] * 1e3:.2f} ms")
    print("workers  path  bitstreams  wall s   overhead ms/bitstream  x decode   goal (<= 2 x decode + 20 ms)")
    for workers, decode, _, old_wall, n_old, new_wall, n_new, pids in rows:
        goal = 2 * decode + 0.020
        for name, wall, n in (("old", old_wall, n_old), ("pool", new_wall, n_new)):
            overhead = wall * workers / n - decode
            print(f"{workers:7d}  {name:4s}  {n:10d}  {wall:6.2f}   {overhead * 1e3:21.1f}  {overhead / decode:8.1f}"
                  f"   {'met' if overhead <= goal else 'missed'} ({goal * 1e3:.1f} ms)")
        print(f"         pool/old wall per bitstream: {new_wall / n_new / (old_wall / n_old):.3f} "
              f"({pids} worker process(es) for {n_new} bitstreams)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", action="append", choices=("zlib", "klt"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--old-limit", type=int, default=30, help="bitstreams the old path is timed on")
    parser.add_argument("--klt-models", help="klt's mini models folder (<dir>/<task>/)")
    parser.add_argument("--train-klt", action="store_true", help="train klt's mini models first (seconds)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; one run, figures comparable with each other only")
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        scratch = Path(tmp)
        for codec in args.codec or ["zlib", "klt"]:
            options: dict[str, str] = {}
            if codec == "klt":
                models = klt_models(args, scratch)
                if models is None:
                    print("\nklt: skipped, no mini models (train them: harness train --codec klt --dataset mini "
                          "--task sal, and --task lm; or give --klt-models DIR or --train-klt)")
                    continue
                options = {"models": str(models.resolve())}
            bench(codec, options, scratch, args)


if __name__ == "__main__":
    main()
