"""`harness train --codec klt`: fit the task's transform on the training features.

`harness train` calls the trainer once per rate point; the transform does not depend on the step,
so the first call fits it and the others find it up to date (same training files, by name, size
and modification time, and the same tail) and return at once. What was trained on goes to
klt_training.json beside the model, not into the model files: retraining on the same features gives
byte-identical model files, so the run key (their hashes) stays the same.

Setting `tail` (`harness train ... -o tail=mini-lm`) fits the transform in the margin metric of a
frozen task head (tail.py) instead of the squared error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import hashlib
import json
from pathlib import Path
import time

import numpy as np

from harness import HarnessError, atomic_write_json
from harness_plugins.klt.model import META, channel_axis_for, fit, to_tokens

TRAINING = "klt_training.json"  # what the model was fitted on (not a model file: not hashed)


def training_key(frames: Sequence[np.ndarray]) -> str | None:
    """A key of the training files (name, size, mtime), or None when they are not files."""
    paths = getattr(frames, "paths", None)
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _up_to_date(out_dir: Path, key: str | None, channel_axis: int, tail: str) -> bool:
    if key is None or not (out_dir / META).is_file() or not (out_dir / TRAINING).is_file():
        return False
    try:
        meta = json.loads((out_dir / META).read_text(encoding="utf-8"))
        training = json.loads((out_dir / TRAINING).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return training.get("key") == key and meta.get("channel_axis") == channel_axis and meta.get("tail", "") == tail


def tail_metric(frames: Sequence[np.ndarray], channel_axis: int, tail: str,
                log: Callable[[str], None]) -> np.ndarray:
    """The margin metric of the head `tail` over every training token (one group only)."""
    from harness_plugins.klt.tail import margin_metric, tail_head

    head = tail_head(tail)
    blocks = (to_tokens(np.asarray(frames[i]), channel_axis) for i in range(len(frames)))
    start = time.perf_counter()
    metric = margin_metric(head, (_single_group(b, tail)[0] for b in blocks))
    log(f"margin metric of tail '{tail}' over the training tokens in {time.perf_counter() - start:.1f}s")
    return metric


def _single_group(tokens: np.ndarray, tail: str) -> np.ndarray:
    if tokens.shape[0] != 1:
        raise HarnessError(f"klt: tail '{tail}' needs features with one group of channels, got {tokens.shape[0]}")
    return tokens


def train_transform(frames: Sequence[np.ndarray], out_dir: Path, settings: Mapping,
                    log: Callable[[str], None] = print) -> dict:
    """Fit and save the KLT of `frames` (raw features) in `out_dir`; returns the trainer's outcome."""
    packing = settings.get("packing")
    if packing is None:
        raise HarnessError("klt: the training settings do not say the task's packing (where its channels are)")
    axis = channel_axis_for(str(packing))
    tail = str(settings.get("tail") or "")
    key = training_key(frames)
    if _up_to_date(out_dir, key, axis, tail):
        log(f"klt transform in {out_dir} is up to date with these {len(frames)} training features")
        return {"checkpoint": out_dir / META, "history": []}
    start = time.perf_counter()
    metric = tail_metric(frames, axis, tail, log) if tail else None
    model = fit((frames[i] for i in range(len(frames))), axis, log, metric)
    model.meta["tail"] = tail
    model.save(out_dir)
    source = getattr(frames, "paths", None)
    atomic_write_json(out_dir / TRAINING, {"key": key, "features": len(frames),
                                           "seconds": round(time.perf_counter() - start, 2),
                                           "folder": str(Path(source[0]).parent) if source else ""})
    log(f"klt transform fitted in {time.perf_counter() - start:.1f}s: {out_dir}")
    return {"checkpoint": out_dir / META, "history": []}

