"""`harness preprocess` / `postprocess`: drive an outside codec with the CTC pipeline.

preprocess writes the packed frame as raw planar samples: uint16 little-endian
for the handcrafted family (10-bit YUV 4:0:0, what VTM reads), float32 little-endian
for the learned family; postprocess reads the decoded frame back and inverts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.ctc import CTC
from harness.dataset import load_feature
from harness.errors import HarnessError
from harness.npyio import atomic_save_npy, atomic_write_bytes
from harness.processing import Preprocessor

RAW_DTYPES = {"frame10": np.dtype("<u2"), "frame01": np.dtype("<f4")}


def _pipeline(ctc: CTC, task: str, family: str, like: np.ndarray, rule: str | None) -> Preprocessor:
    family = ctc.family(family)  # the CTC's families and their inputs; an unknown name is an error
    return Preprocessor.for_task(ctc, task, family, ctc.families[family]["input"], like.shape, like.dtype, rule)


def preprocess_file(ctc: CTC, task: str, family: str, src: Path, dst: Path, rule: str | None = None) -> tuple[int, int]:
    """Write the packed frame of feature `src` to raw file `dst`; returns (width, height)."""
    feature = load_feature(Path(src), ctc.task(task))
    pipe = _pipeline(ctc, task, family, feature, rule)
    frame = pipe.forward(feature)
    atomic_write_bytes(dst, frame.astype(RAW_DTYPES[pipe.kind], copy=False).tobytes())
    return frame.shape[1], frame.shape[0]


def postprocess_file(ctc: CTC, task: str, family: str, src: Path, like: Path, dst: Path,
                     rule: str | None = None) -> tuple[int, ...]:
    """Read decoded raw frame `src`, invert the pipeline to the shape/dtype of `like`, save .npy."""
    original = load_feature(Path(like), ctc.task(task))
    pipe = _pipeline(ctc, task, family, original, rule)
    dtype = RAW_DTYPES[pipe.kind]
    height, width = pipe.frame_shape
    try:
        raw = Path(src).read_bytes()
    except OSError as exc:
        raise HarnessError(f"{src}: cannot read ({exc.strerror or exc})") from None
    expected = height * width * dtype.itemsize
    if len(raw) != expected:
        raise HarnessError(f"{src}: has {len(raw)} bytes; a {width}x{height} {dtype.name} frame has {expected}")
    frame = np.frombuffer(raw, dtype=dtype).reshape(height, width)
    if pipe.kind == "frame10" and frame.max(initial=0) > 1023:
        raise HarnessError(f"{src}: sample values above 1023; not a 10-bit frame")
    atomic_save_npy(dst, pipe.inverse(frame))
    return original.shape
