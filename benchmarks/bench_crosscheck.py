"""Wall time of `harness crosscheck` on packed mini bundles (zlib and klt), run by hand.

    python benchmarks/bench_crosscheck.py [--work DIR] [--jobs 2] [--codec zlib --codec klt]

Makes (once, kept in --work) a full mini run per codec (klt: trains its models first), packs it,
copies the archive into a fresh folder and times the crosscheck of that copy from the command
line, as a second lab would run it. Prints one line per codec: bitstreams, archive bytes, the
crosscheck's wall time and its verdict. The goal of issue 25: a mini bundle in <= 20 s on 2 cores
for zlib and klt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import shutil
import subprocess
import sys
import time


def harness(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True, stdout=subprocess.DEVNULL)


def prepare(codec: str, work: Path, jobs: int) -> Path:
    """A packed full mini run of `codec` (made once)."""
    archive = work / f"{codec}-mini.bundle.tar"
    if archive.exists():
        return archive
    run = work / f"{codec}-mini"
    options: list[str] = []
    if codec == "klt":
        models = work / "klt-models"
        for task in ("sal", "lm"):
            if not (models / task).exists():
                harness("train", "--codec", "klt", "--task", task, "--dataset", "mini", "--out", str(models / task))
        options = ["-o", f"models={models}"]
    harness("run", "--codec", codec, "--dataset", "mini", "--out", str(run), "--jobs", str(jobs), "--no-progress",
            *options)
    harness("pack", str(run), "--out", str(work / f"{codec}-mini.bundle"))
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-crosscheck"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--codec", action="append", default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for codec in args.codec or ["zlib", "klt"]:
        archive = prepare(codec, args.work, args.jobs)
        fresh = args.work / f"check-{codec}"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        shutil.copyfile(archive, fresh / archive.name)
        options = ["-o", f"models={args.work / 'klt-models'}"] if codec == "klt" else []
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "harness.cli", "crosscheck", str(fresh / archive.name),
                               "--dataset", "mini", "--jobs", str(args.jobs), *options],
                              stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        report = json.loads((fresh / archive.name.replace(".tar", ".crosscheck") / "crosscheck.json").read_text())
        decode = next(c for c in report["checks"] if c["name"] == "decode")
        print(f"{codec:5} {archive.stat().st_size:>10} bytes  crosscheck {wall:6.1f} s  verdict {report['verdict']} "
              f"(exit {done.returncode}); decode: {decode['summary']}")


if __name__ == "__main__":
    main()
