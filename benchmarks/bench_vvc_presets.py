"""VVenC presets against VTM (or, without VTM, against VVenC's `slow` preset).

Codes the packed 10-bit frames of demo samples (cls 257x1536, tti 512x512,
csr 186x4096 by default) at QP 22..42 and prints, per preset: total encode
time, its ratio to the reference encoder, and BD-rate vs the reference
(bits against 10-bit frame PSNR, pchip; + = more bits than the reference).
Everything is measured in this one run, encoders single-threaded.

Each preset runs with the vvc plugin's tuned tool switches (its default), and with `--bare` also
without them (rows "<preset>/bare").

    python benchmarks/bench_vvc_presets.py [--tasks cls,tti] [--presets fast,medium] [--bare]
    HARNESS_VTM_DIR=/path/to/VTM python benchmarks/bench_vvc_presets.py --bare   # against VTM

HARNESS_VTM_DIR is a VTM build made with `bash benchmarks/build_vtm.sh SOURCE OUT` (bin/EncoderApp*,
bin/DecoderApp*, cfg/encoder_intra_vtm.cfg); see docs/vvc-vs-vtm.md.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from harness.bdrate import bd_rate
from harness.ctc import load_ctc
from harness.processing import Preprocessor
from harness.registry import default_registry
from harness.sources import resolve_dataset
from harness_plugins import vtm, vvc

QPS = (22, 27, 32, 37, 42)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1023**2 / mse)


def measure(codec, frame: np.ndarray) -> tuple[float, list[int], list[float]]:
    seconds, bits, quality = 0.0, [], []
    for qp in QPS:
        start = time.perf_counter()
        stream = codec.encode(frame, qp, "bench")
        seconds += time.perf_counter() - start
        bits.append(8 * len(stream))
        quality.append(psnr(frame, codec.decode(stream)))
    return seconds, bits, quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="cls,tti,csr", help="demo tasks, comma separated")
    parser.add_argument("--presets", default="fast,medium", help="VVenC presets, comma separated")
    parser.add_argument("--bare", action="store_true", help="also each preset without the tuned switches")
    args = parser.parse_args()
    settings = {}
    for preset in args.presets.split(","):
        settings[preset] = {"preset": preset, "check_recon": "0"}
        if args.bare:
            settings[f"{preset}/bare"] = {"preset": preset, "params": "", "check_recon": "0"}
    ctc = load_ctc()
    dataset = resolve_dataset("demo", None, ctc, default_registry(), progress=False).dataset
    frames = {}
    for task in args.tasks.split(","):
        sample = dataset.samples(task, limit=1)[0]
        feature = dataset.load(sample)
        frames[task] = Preprocessor.for_task(ctc, task, "handcrafted", "frame10", feature.shape, feature.dtype).forward(feature)
    tools = vtm.find_tools()
    if isinstance(tools, str):
        reference_name, reference = "vvenc-slow", vvc.make_codec({"preset": "slow", "check_recon": "0"})
        print(f"VTM not configured ({tools.split(':')[0]}); reference = VVenC preset slow")
    else:
        reference_name, reference = "VTM", vtm.VtmCodec(tools, vtm.DEFAULT_TIMEOUT_S, False, None)
    results = {}
    for task, frame in frames.items():
        results[(task, reference_name)] = measure(reference, frame)
        for name, options in settings.items():
            results[(task, name)] = measure(vvc.make_codec(options), frame)
    print(f"{'task':5} {'preset':12} {'enc s':>8} {'ratio ' + reference_name:>18} {'BD-rate':>9}")
    for task in frames:
        ref_s, ref_bits, ref_q = results[(task, reference_name)]
        for name in settings:
            s, bits, q = results[(task, name)]
            bd = bd_rate(ref_bits, ref_q, bits, q)
            shown = f"{bd.value:+.2f} %" if bd.ok else f"n/a ({bd.reason[:40]})"
            print(f"{task:5} {name:12} {s:8.2f} {ref_s / s:17.1f}x {shown:>9}")
        print(f"{task:5} {reference_name:12} {ref_s:8.2f}")


if __name__ == "__main__":
    main()
