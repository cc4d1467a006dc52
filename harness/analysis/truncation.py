"""Truncation-range study (supplement Table 5): rate, distortion and task metric across ranges.

Each candidate range is the CTC's range of the codec's family scaled by a
factor (per layer for dpt). For every factor the harness writes a copy of the
CTC with that range, runs the codec under it into its own run directory
(resumable like any run; the CTC hash keeps the factors apart) and, when task
heads are available, evaluates it. The table and a rate-accuracy picture per
factor go to the output folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import re
import shutil

import pandas as pd

from harness.ctc import CTC, load_ctc
from harness.errors import HarnessError, MissingHeadFilesError
from harness.figures import plain_log_ticks, plain_text, save_figure
from harness.npyio import atomic_write_text
from harness.registry import default_registry
from harness.runner import RunRequest, execute
from harness.sources import resolve_ctc


def scaled_ctc(ctc: CTC, task: str, family: str, factor: float, out_dir: Path) -> Path:
    """A copy of the CTC directory whose `task` range for `family` is scaled by `factor`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in ctc.root.glob("*.toml"):
        shutil.copy(path, out_dir / path.name)
    trunc = ctc.truncation(task, family)
    pairs = [[lo * factor, hi * factor] for lo, hi in zip(trunc.lo, trunc.hi)]
    value = repr(pairs[0]) if len(pairs) == 1 else repr(pairs)
    text = (out_dir / "tasks.toml").read_text(encoding="utf-8")
    section = text.index(f"[tasks.{task}]")
    end = text.find("\n[tasks.", section + 1)
    end = len(text) if end < 0 else end
    body, count = re.subn(rf"^truncation\.{family} = .*$", f"truncation.{family} = {value}",
                          text[section:end], count=1, flags=re.M)
    if count != 1:
        raise HarnessError(f"{ctc.root}/tasks.toml: no truncation.{family} line for task '{task}'")
    atomic_write_text(out_dir / "tasks.toml", text[:section] + body + text[end:])
    return out_dir


def truncation_study(codec: str, task: str, factors: Sequence[float], out: Path, dataset: str | None = None,
                     data_root: Path | None = None, limit: int | None = None,
                     rate_points: Sequence[float] | None = None, evaluate: bool = True,
                     progress: bool = True) -> pd.DataFrame:
    registry = default_registry()
    ctc = resolve_ctc(None, dataset, registry)
    spec = registry.codec(codec).spec
    if not spec.family:
        raise HarnessError(f"codec '{codec}' takes raw features: the CTC's truncation does not apply to it")
    rows = []
    for factor in factors:
        folder = out / f"x{factor:g}"
        ctc_dir = scaled_ctc(ctc, task, spec.family, factor, folder / "ctc")
        outcome = execute(RunRequest(codec=codec, tasks=[task], dataset=dataset, data_root=data_root, limit=limit,
                                     out=folder / "run", rate_points=rate_points, ctc_dir=ctc_dir,
                                     progress=progress))
        summary = outcome.table[outcome.table.status == "ok"].groupby("rate_point").agg(
            bpfp=("bpfp", "mean"), mse=("mse", "mean")).reset_index()
        scaled = load_ctc(ctc_dir).truncation(task, spec.family)
        summary.insert(0, "range", "; ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(scaled.lo, scaled.hi)))
        summary.insert(0, "factor", factor)
        if evaluate:
            summary = summary.merge(_metrics(outcome.run_dir, ctc_dir), on="rate_point", how="left")
        rows.append(summary)
    table = pd.concat(rows, ignore_index=True)
    atomic_write_text(out / "truncation.csv", table.to_csv(index=False))
    _plot(table, task, out / "truncation.png")
    return table


def _metrics(run_dir: Path, ctc_dir: Path) -> pd.DataFrame:
    from harness.evaluate import EvaluationRequest, evaluate_run
    from harness.results import primary_metrics

    try:
        metrics = evaluate_run(EvaluationRequest(run_dir, progress=False), ctc_dir=ctc_dir)
    except MissingHeadFilesError:
        return pd.DataFrame(columns=["rate_point", "metric", "value"])
    metrics = primary_metrics(metrics)
    metrics = metrics[metrics.rate_point != "orig"].copy()
    metrics["rate_point"] = metrics.rate_point.astype(float)
    return metrics[["rate_point", "metric", "value"]]


@plain_text()
def _plot(table: pd.DataFrame, task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = "value" if "value" in table and table["value"].notna().any() else "mse"
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for factor, group in table.groupby("factor"):
        ax.plot(group.bpfp, group[y], marker="o", label=f"x{factor:g}: {group['range'].iloc[0]}")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("BPFP")
    ax.set_ylabel(table["metric"].dropna().iloc[0] if y == "value" else "feature MSE")
    ax.set_title(f"{task}: truncation ranges")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
