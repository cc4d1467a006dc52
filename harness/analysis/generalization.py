"""Generalization study (paper Table 6): a learned codec trained on task A applied to task B.

For every pair (A, B) the codec codes B's features (with B's CTC
pre-processing) using the models of A (codec option `model_task=A`) at A's
rate point of a chosen index, into its own run directory; the task heads then
score B. Output: a long table (train task, test task, BPFP, metric) and a
picture of the metric matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError, MissingHeadFilesError
from harness.figures import plain_text, save_figure
from harness.npyio import atomic_write_text
from harness.registry import default_registry
from harness.runner import RunRequest, codec_rate_points, execute
from harness.sources import resolve_ctc


def generalization_study(codec: str, tasks: Sequence[str], out: Path, options: dict[str, str],
                         rate_index: int = 2, dataset: str | None = None, data_root: Path | None = None,
                         limit: int | None = None, evaluate: bool = True, progress: bool = True) -> pd.DataFrame:
    registry = default_registry()
    ctc = resolve_ctc(None, dataset, registry)
    spec = registry.codec(codec).spec
    if "model_task" not in spec.options:
        raise HarnessError(f"codec '{codec}' has no 'model_task' option: it cannot code one task with another's models")
    rows = []
    for trained in tasks:
        points = codec_rate_points(spec, ctc, trained)
        if not -len(points) <= rate_index < len(points):
            raise HarnessError(f"rate index {rate_index} out of range for {trained}'s {len(points)} rate points")
        point = points[rate_index]
        for tested in tasks:
            run = out / f"{trained}-on-{tested}"
            outcome = execute(RunRequest(codec=codec, tasks=[tested], dataset=dataset, data_root=data_root,
                                         limit=limit, out=run, rate_points=[point], rate_points_of=trained,
                                         codec_options={**options, "model_task": trained}, progress=progress))
            ok = outcome.table[outcome.table.status == "ok"]
            row = {"trained_on": trained, "tested_on": tested, "rate_parameter": spec.rate_parameter,
                   "rate_point": point, "bpfp": ok.bpfp.mean(), "mse": ok.mse.mean(), "samples": len(ok)}
            if evaluate and len(ok):
                row.update(_metric(run))
            rows.append(row)
    table = pd.DataFrame(rows)
    atomic_write_text(out / "generalization.csv", table.to_csv(index=False))
    _plot(table, out / "generalization.png")
    return table


def _metric(run_dir: Path) -> dict:
    from harness.evaluate import EvaluationRequest, evaluate_run
    from harness.results import primary_metrics

    try:
        metrics = evaluate_run(EvaluationRequest(run_dir, progress=False))
    except MissingHeadFilesError:
        return {}
    metrics = primary_metrics(metrics)
    coded = metrics[metrics.rate_point != "orig"].iloc[0]
    orig = metrics[metrics.rate_point == "orig"].iloc[0]
    return {"metric": coded.metric, "value": coded.value, "orig_value": orig.value, "mode": coded["mode"]}


@plain_text()
def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = "value" if "value" in table else "bpfp"
    matrix = table.pivot(index="trained_on", columns="tested_on", values=column)
    fig, ax = plt.subplots(figsize=(4.8, 4), dpi=120)
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns)
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for (i, j), value in pd.DataFrame(matrix.to_numpy(dtype=float)).stack().items():
        ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(image, ax=ax, label=column)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
