"""VVenC settings against the real VTM, through the harness itself, per task.

For each VVenC setting (a preset plus optional `-vvenc-params` tool switches, the vvc plugin's
`preset` and `params` options), codes the same samples as a VTM run of the same dataset, evaluates
the task heads, and prints per task: BD-rate against VTM on feature MSE and on the task metric
(pchip; + = more bits than VTM for the same quality), and the encode / decode CPU-time ratio
VTM / VVenC over the same jobs. Every number comes from one invocation (the machines are shared:
ratios from different runs do not compare).

VTM is not on any package registry: build it outside this repository with
`bash benchmarks/build_vtm.sh SOURCE OUT` and point HARNESS_VTM_DIR at OUT (bin/EncoderApp*,
bin/DecoderApp*, cfg/encoder_intra_vtm.cfg). Without HARNESS_VTM_DIR, pass --vtm-run with a finished
`harness run --codec vtm` directory of the same dataset.

    HARNESS_VTM_DIR=~/vtm-23.3 python benchmarks/bench_vvc_vs_vtm.py --dataset mini --out runs/bench
    python benchmarks/bench_vvc_vs_vtm.py --dataset mini --vtm-run runs/mini-vtm \
        --setting fast=fast --setting "fast+mts=fast:MTS=1" --out runs/bench
    python benchmarks/bench_vvc_vs_vtm.py --dataset demo --task cls --task tti --limit 2 --out runs/bench-demo

Settings are NAME=PRESET[:Key=Value...] (the bare preset plus those switches) or `default` (the plugin's
default: preset fast with its tuned switches); the default list is `default` and the bare presets.
Writes OUT/<setting>/ (ordinary run directories, resumable) and OUT/summary.csv.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import sys

import pandas as pd

from harness.curves import compare, load_run_curve
from harness.evaluate import EvaluationRequest, evaluate_run
from harness.provenance import load_run_meta
from harness.results import read_table
from harness.runner import RunRequest, execute
from harness.sources import resolve_ctc
from harness.registry import default_registry

DEFAULT_SETTINGS = ("default", "faster=faster", "fast=fast", "medium=medium", "slow=slow")


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """NAME=PRESET[:Key=Value...] (the bare preset plus these switches), or "default": the plugin's defaults."""
    if text == "default":
        return "default", {"check_recon": "0"}
    name, _, body = text.partition("=")
    preset, _, params = body.partition(":")
    if not name or not preset:
        raise SystemExit(f"--setting must be NAME=PRESET[:Key=Value...] or default, got {text!r}")
    return name, {"preset": preset, "params": params, "check_recon": "0"}


def code_and_evaluate(args: argparse.Namespace, codec: str, options: dict[str, str], out: Path) -> Path:
    request = RunRequest(codec=codec, tasks=args.task, dataset=args.dataset, data_root=args.data_root,
                         limit=args.limit, out=out, jobs=args.jobs, codec_options=options,
                         command=["bench_vvc_vs_vtm.py", *sys.argv[1:]], progress=True)
    outcome = execute(request)
    if outcome.failures:
        first = outcome.failures[0]
        raise SystemExit(f"{codec} {options}: {len(outcome.failures)} job(s) failed; first: {first.error}")
    evaluate_run(EvaluationRequest(out, progress=True))
    return out


def cpu_ratio(reference: pd.DataFrame, test: pd.DataFrame, task: str, column: str) -> float:
    """sum(reference) / sum(test) of a CPU-time column over the jobs both runs finished."""
    keys = ["task", "rate_point", "sample"]
    both = reference[reference.task == task].merge(test[test.task == task], on=keys, suffixes=("_ref", "_test"))
    total = both[f"{column}_test"].sum()
    return float(both[f"{column}_ref"].sum() / total) if total > 0 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset", default="mini")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--task", action="append", help="task (repeatable; default: all of the dataset)")
    parser.add_argument("--limit", type=int, help="at most N samples per task")
    parser.add_argument("--jobs", type=int, default=1, help="parallel jobs (CPU times stay per job)")
    parser.add_argument("--setting", action="append", help="NAME=PRESET[:Key=Value...] (repeatable)")
    parser.add_argument("--vtm-run", type=Path, help="a finished vtm run of the same samples (else one is made)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    if args.vtm_run is None and not os.environ.get("HARNESS_VTM_DIR"):
        raise SystemExit("set HARNESS_VTM_DIR to a VTM build (bash benchmarks/build_vtm.sh) or pass --vtm-run")
    vtm_dir = args.vtm_run or code_and_evaluate(args, "vtm", {}, args.out / "vtm")
    ctc = resolve_ctc(None, args.dataset, default_registry())
    vtm_table = read_table(vtm_dir)
    vtm_curves = {on: load_run_curve(vtm_dir, ctc, on) for on in ("mse", "metric")}
    rows = []
    for text in args.setting or DEFAULT_SETTINGS:
        name, options = parse_setting(text)
        run_dir = code_and_evaluate(args, "vvc", options, args.out / name)
        table = read_table(run_dir)
        by_task = {on: {c.task: c for c in compare(vtm_curves[on], load_run_curve(run_dir, ctc, on), on=on)}
                   for on in ("mse", "metric")}
        for task in sorted(by_task["mse"]):
            rows.append({"setting": name, "preset": options.get("preset", "(default)"),
                         "params": options.get("params", "(default)"), "task": task,
                         "bd_rate_mse_pct": by_task["mse"][task].rate.value,
                         "bd_rate_metric_pct": by_task["metric"][task].rate.value,
                         "why_nan": by_task["metric"][task].rate.reason or by_task["mse"][task].rate.reason,
                         "enc_cpu_ratio": cpu_ratio(vtm_table, table, task, "enc_cpu_s"),
                         "dec_cpu_ratio": cpu_ratio(vtm_table, table, task, "dec_cpu_s"),
                         "samples": int(table[table.task == task]["sample"].nunique())})
    summary = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out / "summary.csv", index=False)
    vtm_version = load_run_meta(vtm_dir).get("codec", {}).get("tools", {})
    print(f"reference: {vtm_dir} ({vtm_version or 'VTM'}); dataset {args.dataset}")
    print(summary.drop(columns=["why_nan"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for row in summary.itertuples():
        if row.why_nan:
            print(f"note: {row.setting}/{row.task}: {row.why_nan}")


if __name__ == "__main__":
    main()
