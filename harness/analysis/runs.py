"""Reconstructions from a run directory, for analyses of what a codec did to the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.codec import format_rate_point
from harness.ctc import CTC
from harness.errors import HarnessError
from harness.jobs import codec_for_verify
from harness.processing import Preprocessor
from harness.run_meta import read_run_meta
from harness.registry import default_registry
from harness.results import check_record, job_paths, parse_record, read_bitstream


def run_reconstructor(run_dir: Path, rate_point: float, ctc: CTC, dataset_label: str):
    """reconstruct(task, sample_id, feature): decode the run's stored bitstream of that sample.

    Returns None for samples the run did not code at this rate point. The run
    must have coded the dataset being analysed.
    """
    meta = read_run_meta(Path(run_dir))
    if meta.dataset != dataset_label:
        raise HarnessError(f"{run_dir}: the run coded dataset '{meta.dataset}', not '{dataset_label}'")
    name, options = meta.codec, meta.option_items
    spec = default_registry().codec(name).spec
    codec = codec_for_verify(name, options, ())
    label = format_rate_point(spec.rate_parameter, rate_point)

    def reconstruct(task: str, sample_id: str, feature: np.ndarray) -> np.ndarray | None:
        path = job_paths(Path(run_dir), task, label, sample_id).record
        if not path.exists():
            return None
        record = parse_record(path)  # untrusted: checked as verify and evaluate check it
        check_record(record, str(path), (task, label, sample_id))
        if record.status != "ok":
            return None
        decoded = codec.decode(read_bitstream(Path(run_dir), record))
        if spec.input_kind == "feature":
            return decoded
        pre = Preprocessor.for_task(ctc, task, spec.family, spec.input_kind, feature.shape, feature.dtype,
                                    meta.quant_rule)
        return pre.inverse(decoded)

    reconstruct.label = f"{name} run @ {label}"  # type: ignore[attr-defined]
    return reconstruct
