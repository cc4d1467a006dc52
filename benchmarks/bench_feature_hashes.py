"""What checking feature identity costs a run: sha256 of every feature, cold and from the cache.

A run hashes each listed feature while planning (harness.feature_hashes); the digest is kept by
size and mtime, so a resumed run reads only the cache. This prints both times for a dataset.

    python benchmarks/bench_feature_hashes.py [--dataset demo] [--data-root DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time

from harness.feature_hashes import FeatureHashes
from harness.registry import default_registry
from harness.sources import resolve_ctc, resolve_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--data-root", type=Path)
    args = parser.parse_args()
    registry = default_registry()
    ctc = resolve_ctc(None, None if args.data_root else args.dataset, registry)
    dataset = resolve_dataset(None if args.data_root else args.dataset, args.data_root, ctc, registry).dataset
    paths = [s.path for t in dataset.available_tasks() for s in dataset.samples(t)]
    size = sum(p.stat().st_size for p in paths)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "feature-sha256.json"
        start = time.perf_counter()
        cold = FeatureHashes(store)
        for path in paths:
            cold.digest(path)
        cold.save()
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = FeatureHashes(store)
        for path in paths:
            warm.digest(path)
        warm_s = time.perf_counter() - start
    print(f"{len(paths)} features, {size / 2**20:.1f} MiB: cold {cold_s:.3f} s "
          f"({size / 2**20 / cold_s:.0f} MiB/s), from the cache {warm_s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
