"""`harness train --codec klt`: fit the task's transform on the training features.

`harness train` calls the trainer once per rate point; the transform does not depend on the step,
so the first call fits it and the others find it up to date (same training files, by name, size
and modification time) and return at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import hashlib
import json
from pathlib import Path
import time

import numpy as np

from harness import HarnessError
from harness_plugins.klt.model import META, channel_axis_for, fit


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


def _up_to_date(out_dir: Path, key: str | None, channel_axis: int) -> bool:
    if key is None or not (out_dir / META).is_file():
        return False
    try:
        meta = json.loads((out_dir / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("training", {}).get("key") == key and meta.get("channel_axis") == channel_axis


def train_transform(frames: Sequence[np.ndarray], out_dir: Path, settings: Mapping,
                    log: Callable[[str], None] = print) -> dict:
    """Fit and save the KLT of `frames` (raw features) in `out_dir`; returns the trainer's outcome."""
    packing = settings.get("packing")
    if packing is None:
        raise HarnessError("klt: the training settings do not say the task's packing (where its channels are)")
    axis = channel_axis_for(str(packing))
    key = training_key(frames)
    if _up_to_date(out_dir, key, axis):
        log(f"klt transform in {out_dir} is up to date with these {len(frames)} training features")
        return {"checkpoint": out_dir / META, "history": []}
    start = time.perf_counter()
    model = fit((frames[i] for i in range(len(frames))), axis, log)
    source = getattr(frames, "paths", None)
    model.meta["training"] = {"key": key, "features": len(frames), "seconds": round(time.perf_counter() - start, 2),
                              "folder": str(Path(source[0]).parent) if source else ""}
    model.save(out_dir)
    log(f"klt transform fitted in {time.perf_counter() - start:.1f}s: {out_dir}")
    return {"checkpoint": out_dir / META, "history": []}

