"""Task heads: what turns decoded features into the task metric.

A task plugin returns `TaskHeadSpec` records from its `harness_tasks` hook,
built-in heads included. A head predicts per sample; the harness collects the
predictions of a whole rate point and asks the head for the metric, since the
CTC's metrics are set-level (mIoU pools one histogram, FID compares sets).

Targets: real ground truth where the dataset provides it (labels, masks,
depth maps, answer letters); otherwise — the synthetic demo — the head's own
predictions on the original features, so the metric measures fidelity to the
uncompressed features (100 % accuracy, FID 0 on the originals). The mode is
written next to every number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.ctc import CTC
from harness.dataset import Dataset


@dataclass(frozen=True)
class HeadContext:
    """What a head factory gets: the CTC, the dataset, where weights are, and the device."""

    ctc: CTC
    dataset: Dataset
    synthetic: bool
    weights: Path | None
    backend: str  # "official" (published weights) or "demo" (seeded random weights of the same shapes)
    device: str = "cpu"


class TaskHead(Protocol):
    metric: str

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        """The head's output for one sample, as a numpy array (cached by the harness)."""

    def ground_truth(self, sample_ids: Sequence[str]) -> list[Any] | None:
        """Real targets, or None when the dataset has none (then: predictions on the originals)."""

    def score(self, predictions: Sequence[np.ndarray], targets: Sequence[Any]) -> float:
        """The set-level metric."""


@dataclass(frozen=True)
class TaskHeadSpec:
    """A task head plugin.

    Example::

        TaskHeadSpec(name="dinov2-cls", task="cls", version="1.0", factory=make_cls_head,
                     required_files=lambda ctx: [ctx.weights / "dinov2_vitg14_linear_head.pth"])

    - required_files(context): files the official backend needs; all missing
      ones are reported at once before any work.
    - extractor(task, source, out, model_dir, limit, keep_correct, progress)
      -> ids written: makes features of this task from source data (`harness extract`).
    """

    name: str
    task: str
    version: str
    factory: Callable[[HeadContext], TaskHead]
    description: str = ""
    required_files: Callable[[HeadContext], list[Path]] = field(default=lambda context: [])
    extractor: Callable[..., list[str]] | None = None
