"""Shared helpers of the feature analyses: chunked iteration, planes, CTC ranges."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from harness.ctc import CTC, Truncation

CHUNK = 1 << 20  # elements per float64 work chunk (8 MB)


def _flat_chunks(array: np.ndarray, max_elems: int | None = None) -> Iterator[np.ndarray]:
    """Yield pieces of `array` (views where possible) of at most ~max_elems elements.

    Contiguous arrays are cut flat; otherwise we recurse over the first axis so
    that no full copy of a strided view is ever made.
    """
    a = np.asarray(array)
    max_elems = max_elems or CHUNK
    if a.size == 0:
        return
    if a.flags.c_contiguous or a.ndim <= 1:
        flat = a.reshape(-1)
        for start in range(0, flat.size, max_elems):
            yield flat[start:start + max_elems]
        return
    per_row = a[0].size
    if per_row >= max_elems:
        for row in a:
            yield from _flat_chunks(row, max_elems)
    else:
        step = max(1, max_elems // per_row)
        for start in range(0, a.shape[0], step):
            yield np.ascontiguousarray(a[start:start + step]).reshape(-1)


def _planes(feature: np.ndarray) -> Iterator[np.ndarray]:
    """The 2-D (H, W) planes of an (..., H, W) array, as views."""
    lead = feature.shape[:-2]
    for index in np.ndindex(*lead):
        yield feature[index]


# ------------------------------------------------------------------ ranges

def original_range(ctc: CTC, task: str) -> Truncation:
    """The task's original data range (paper Table 4; `truncation.original` in ctc/)."""
    return ctc.truncation(task, "original")


def task_range(ctc: CTC, task: str, name: str) -> Truncation:
    """'original' or a codec family's truncation range."""
    return original_range(ctc, task) if name == "original" else ctc.truncation(task, name)
