"""Pre+post-processing cost of one dpt feature (2x4x1611x1536 float32).

Prints the time of truncate+quantize+pack followed by unpack+de-quantize, as a
ratio to a bare `np.clip` + `astype(uint16)` pass over the same array (target
<= 3x), and the peak memory allocated on top of the input, as a multiple of the
feature size (target <= 4x). Ratios come from one run, interleaved.

    python benchmarks/bench_processing.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from harness.ctc import load_ctc
from harness.processing import Preprocessor


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ctc = load_ctc()
    rng = np.random.default_rng(0)
    feature = (rng.standard_t(4, (2, 4, 1611, 1536)) * 3).astype(np.float32)
    pipe = Preprocessor.for_task(ctc, "dpt", "handcrafted", "frame10", feature.shape, feature.dtype)

    def bare() -> None:
        np.clip(feature, -20, 20).astype(np.uint16)

    def ours() -> None:
        pipe.inverse(pipe.forward(feature))

    bare(), ours()  # warm up page faults
    t_bare, t_ours = [], []
    for _ in range(args.repeat):  # interleave so machine noise hits both
        t_bare.append(best_of(bare, 1))
        t_ours.append(best_of(ours, 1))
    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = feature.nbytes
    print(f"dpt feature: {feature.shape} float32, {size / 2**20:.1f} MiB")
    print(f"bare clip+astype: {min(t_bare) * 1e3:.1f} ms")
    print(f"pre+post (truncate, quantize, pack, unpack, de-quantize): {min(t_ours) * 1e3:.1f} ms")
    print(f"time ratio: {min(t_ours) / min(t_bare):.2f}x  (target <= 3x)")
    print(f"peak extra memory: {peak / 2**20:.1f} MiB = {peak / size:.2f}x the feature  (target <= 4x)")


if __name__ == "__main__":
    main()
