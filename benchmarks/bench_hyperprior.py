"""Hyperprior encode/decode time per CTC task shape on this CPU, next to the paper's GPU times.

An untrained (seeded) model with its entropy tables built codes a [0, 1] frame
of each task's packed size; the published RTX 4090 times (supplement Table 2,
anchors/paper-complexity.csv) are printed beside for reference. Timing is the
best of --repeat runs (dpt and seg: one run each).

    python benchmarks/bench_hyperprior.py [--threads 1] [--tasks cls,csr,tti,seg]
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
import resource
import time

import numpy as np
import pandas as pd
import torch

from harness_plugins.hyperprior.codec import HyperpriorCodec
from harness_plugins.hyperprior.model import FeatureHyperprior

SHAPES = {"cls": (257, 1536), "csr": (200, 4096), "tti": (512, 512), "seg": (2740, 1536), "dpt": (3222, 6144)}


def paper_times() -> pd.DataFrame:
    sheet = Path(str(resources.files("harness_anchors"))) / "paper-complexity.csv"
    table = pd.read_csv(sheet)
    table = table[table.codec == "hyperprior"].copy()
    table["shown"] = table.seconds.fillna((table.seconds_min + table.seconds_max) / 2)
    return table.pivot(index="task", columns="phase", values="shown")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default="cls,csr,tti,seg")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = FeatureHyperprior()
    model.update(force=True)
    gpu = paper_times()
    print(f"{'task':5} {'frame':>10} {'enc s':>7} {'dec s':>7} {'paper GPU enc/dec s':>20} {'peak RSS GB':>11}")
    for task in args.tasks.split(","):
        codec = HyperpriorCodec(models={(task, 0.01): model}, threads=args.threads)
        h, w = SHAPES[task]
        rng = np.random.default_rng(0)
        frame = np.clip(0.5 + 0.1 * rng.standard_t(4, size=(h, w)), 0, 1).astype(np.float32)
        enc, dec = [], []
        for _ in range(1 if task in ("seg", "dpt") else args.repeat):
            start = time.perf_counter()
            stream = codec.encode(frame, 0.01, task)
            enc.append(time.perf_counter() - start)
            start = time.perf_counter()
            codec.decode(stream)
            dec.append(time.perf_counter() - start)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        paper = f"{gpu.loc[task, 'encode']:.2f}/{gpu.loc[task, 'decode']:.2f}" if task in gpu.index else "-"
        print(f"{task:5} {h:>4}x{w:<5} {min(enc):7.2f} {min(dec):7.2f} {paper:>20} {rss:11.1f}")


if __name__ == "__main__":
    main()
