"""The evaluation stage: task metrics per (task, rate point) over the decoded features of a run.

For each task of a run: the head's predictions on the original features (the
`orig` row, and the targets when the dataset has no ground truth), then, per
rate point, the predictions on the features decoded from the stored
bitstreams. Predictions are cached under RUN/predictions/ (atomic .npy), so an
interrupted evaluation resumes and re-scoring is instant. Writes
RUN/metrics.csv: codec, task, rate_point, bpfp, metric, value, samples, mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import sys

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness.ctc import CTC, ctc_of_run
from harness.dataset import Dataset, load_feature
from harness.errors import HarnessError, MissingHeadFilesError
from harness.jobs import codec_for_verify
from harness.npyio import atomic_save_npy, atomic_write_text, load_npy
from harness.processing import Preprocessor
from harness.run_meta import RunMeta, read_run_meta
from harness.registry import Registry, default_registry
from harness.results import read_stored, read_table
from harness.safe_io import check_run_folders
from harness.tasks import HeadContext

WEIGHTS_ENV = "FCM_HARNESS_WEIGHTS"
METRIC_COLUMNS = ["codec", "task", "rate_parameter", "rate_point", "bpfp", "metric", "value", "samples", "mode",
                  "head", "backend", "primary"]


def _scores(head, predictions, targets) -> dict[str, float]:
    """The main metric first, then any secondary ones the head offers (extra_scores)."""
    scores = {head.metric: head.score(predictions, targets)}
    extra = getattr(head, "extra_scores", None)
    if extra is not None:
        scores.update(extra(predictions, targets))
    return scores


@dataclass
class EvaluationRequest:
    run_dir: Path
    backend: str = "auto"  # auto: demo heads on synthetic data, official heads otherwise
    weights: Path | None = None
    heads: dict[str, str] | None = None  # task -> head name, when several are registered
    progress: bool = True
    device: str | None = None  # default: cuda when available


def check_head_metric(head, registered, ctc: CTC, task: str) -> None:
    """A head must score the metric the CTC names for its task: curves and BD-rates are read by that name."""
    wanted = ctc.task(task).metric
    if getattr(head, "metric", None) != wanted:
        raise HarnessError(f"task head '{registered.spec.name}' ({registered.source.describe()}) scores "
                           f"'{getattr(head, 'metric', None)}', but {ctc.root / 'tasks.toml'} [tasks.{task}] "
                           f"says metric = '{wanted}'")


def _context(meta: RunMeta, ctc: CTC, request: EvaluationRequest) -> HeadContext:
    synthetic = meta.synthetic
    backend = request.backend if request.backend != "auto" else ("demo" if synthetic else "official")
    if backend not in ("demo", "official"):
        raise HarnessError(f"unknown head backend '{backend}'; available: auto, demo, official")
    weights = request.weights or (Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else None)
    dataset = Dataset(Path(meta.dataset_root), ctc, name=meta.dataset, is_demo=synthetic)
    return HeadContext(ctc, dataset, synthetic, weights, backend, request.device or _default_device())


def _default_device() -> str:
    """CUDA when torch sees a GPU, else the CPU."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_weights(registry: Registry, context: HeadContext, tasks: Sequence[str], heads: dict[str, str]) -> None:
    """Every missing head file of every task, in one message, before any work."""
    missing = []
    for task in tasks:
        spec = registry.head_for(task, heads.get(task)).spec
        missing += [str(p) for p in spec.required_files(context) if not p.exists()]
    if missing:
        hint = f"set --weights DIR or ${WEIGHTS_ENV}" if context.weights is None else "put them there"
        raise MissingHeadFilesError(f"missing task-head files ({hint}; or --heads demo for seeded stand-in heads): "
                           + ", ".join(missing))


def evaluate_run(request: EvaluationRequest, ctc_dir: Path | None = None) -> pd.DataFrame:
    run_dir = Path(request.run_dir)
    meta = read_run_meta(run_dir)
    check_run_folders(run_dir)
    ctc = ctc_of_run(meta.raw, run_dir, ctc_dir)
    table = read_table(run_dir)
    ok = table[table.status == "ok"]
    if ok.empty:
        raise HarnessError(f"{run_dir}: no finished jobs to evaluate")
    registry = default_registry()
    context = _context(meta, ctc, request)
    tasks = sorted(ok.task.unique())
    heads = request.heads or {}
    check_weights(registry, context, tasks, heads)
    codec_name = meta.codec
    codec = codec_for_verify(codec_name, meta.option_items, ())
    spec = registry.codec(codec_name).spec
    rows = []
    total = len(ok) + ok.groupby("task")["sample"].nunique().sum()
    with tqdm(total=int(total), desc="evaluating", unit="feature", disable=not request.progress,
              file=sys.stderr) as bar:
        for task in tasks:
            head_reg = registry.head_for(task, heads.get(task))
            head = head_reg.spec.factory(context)
            check_head_metric(head, head_reg, ctc, task)
            task_rows = ok[ok.task == task]
            samples = sorted(task_rows["sample"].unique())
            features = {s: context.dataset.feature_path(task, s) for s in samples}
            # keyed by the heads that made them, so switching backends never reuses predictions
            cache = run_dir / "predictions" / f"{context.backend}-{head_reg.spec.name}" / task

            def cached(label: str, sample: str, make: Callable[[], np.ndarray]) -> np.ndarray:
                path = cache / label / f"{sample}.npy"
                if path.exists():
                    try:
                        return load_npy(path)
                    except HarnessError:
                        pass  # damaged: predict again
                value = np.asarray(make())
                atomic_save_npy(path, value)
                return value

            orig = [cached("orig", s, lambda s=s: head.predict(s, load_feature(features[s], ctc.task(task))))
                    for s in samples]
            bar.update(len(samples))
            truth = head.ground_truth(samples)
            mode = "labels" if truth is not None else "fidelity"
            targets = truth if truth is not None else orig
            base = {"codec": codec_name, "task": task, "mode": mode, "head": head_reg.spec.name,
                    "backend": context.backend, "rate_parameter": spec.rate_parameter}

            def add_rows(point: str, bpfp: float, predictions, wanted) -> None:
                for i, (name, value) in enumerate(_scores(head, predictions, wanted).items()):
                    rows.append({**base, "rate_point": point, "bpfp": bpfp, "metric": name, "value": value,
                                 "samples": len(predictions), "primary": i == 0})

            add_rows("orig", ctc.original_bpfp, orig, targets)
            for point, group in task_rows.groupby("rate_point"):
                ids = list(group["sample"])
                label = f"{spec.rate_parameter}{point:g}"
                preds = []
                for record in group.itertuples():
                    # checked every time, also when a prediction is cached: a replaced bitstream is refused
                    stored = read_stored(run_dir, record.bitstream_path, record.bytes, record.bitstream_sha256,
                                         f"{run_dir}: {task}/{label}/{record.sample}")

                    def decoded(record=record, stored=stored):
                        original = load_feature(features[record.sample], ctc.task(task))
                        frame = codec.decode(stored)
                        if spec.input_kind == "feature":
                            return head.predict(record.sample, frame)
                        pipe = Preprocessor.for_task(ctc, task, spec.family, spec.input_kind, original.shape,
                                                     original.dtype, meta.quant_rule)
                        return head.predict(record.sample, pipe.inverse(frame))
                    # the bitstream's hash in the name: a re-coded job gets fresh predictions
                    preds.append(cached(label, f"{record.sample}-{record.bitstream_sha256[:16]}", decoded))
                    bar.update(1)
                add_rows(f"{point:g}", float(group.bpfp.mean()), preds, [targets[samples.index(s)] for s in ids])
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    atomic_write_text(run_dir / "metrics.csv", frame.to_csv(index=False, float_format="%.10g"))
    return frame
