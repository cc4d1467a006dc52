"""`harness train`: train a learned codec's model on a folder of features.

The harness prepares what the codec sees at coding time (its family's
truncation and normalization, packing) and the CTC's per-task settings (crop,
batch, epochs from ctc/), then calls the codec's `trainer`. Features are read
lazily, one file at a time, and kept in memory while they fit a budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from harness.codec import CodecSpec
from harness.ctc import CTC
from harness.dataset import load_feature
from harness.errors import DatasetError, HarnessError
from harness.figures import plain_text, save_figure
from harness.npyio import atomic_write_json
from harness.processing import Preprocessor


class FeatureFrames(Sequence):
    """Codec-input frames of every .npy feature in a folder (sorted), made on demand."""

    def __init__(self, folder: Path, ctc: CTC, task: str, spec: CodecSpec, cache_bytes: int = 4 << 30) -> None:
        self.paths = sorted(Path(folder).glob("*.npy"))
        if not self.paths:
            raise DatasetError(f"{folder}: no .npy features to train on")
        self.ctc, self.task, self.spec = ctc, task, spec
        self.cache: dict[int, np.ndarray] = {}
        self.cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        if index in self.cache:
            return self.cache[index]
        feature = load_feature(self.paths[index], self.ctc.task(self.task))
        if self.spec.input_kind == "feature":  # the codec takes the raw feature
            frame = feature
        else:
            pipe = Preprocessor.for_task(self.ctc, self.task, self.spec.family, self.spec.input_kind,
                                         feature.shape, feature.dtype)
            frame = pipe.forward(feature)
        if frame.nbytes <= self.cache_left:
            self.cache[index], self.cache_left = frame, self.cache_left - frame.nbytes
        return frame


def training_settings(ctc: CTC, task: str, overrides: Mapping[str, object], family: str | None = "learned") -> dict:
    """The CTC's training table for the task, then the user's overrides.

    From the task's `learned` table (the learned family's): crop, batch, epochs, and when given steps_per_epoch (default: one
    pass over the training features), lr (default 1e-4, the official recipe's), network ([N, M],
    default: the codec's own), input_gain and input_center (the network's input normalization, default
    none), input_norm ("column": a centre and gain per frame column instead), warm_start and
    warm_start_epochs (each λ but the lowest starts from the next lower λ's model) with the λs.
    Overrides (`harness train` options and -o KEY=VALUE) win.
    """
    table = ctc.task(task).training
    settings = {"crop": list(table["crop"]), "batch": table["batch"], "epochs": table["epochs"],
                "lr": table.get("lr", 1e-4), "val_split": 0.1, "source": table.get("source", ""),
                "packing": ctc.task(task).packing}
    for key in ("steps_per_epoch", "network", "input_gain", "input_center", "input_norm", "warm_start",
                "warm_start_epochs", "lambdas"):
        if key in table:
            settings[key] = table[key]
    settings.update({k: v for k, v in overrides.items() if v is not None})
    # the family's frames are padded to this multiple; a crop that is not one would be padded too
    family = ctc.family(family) if family else None
    multiple = int(ctc.families[family].get("pad_multiple", 1)) if family else 1
    if any(int(side) % multiple for side in settings["crop"]):
        raise HarnessError(f"training crop {settings['crop']} for '{task}' is not a multiple of the CTC's "
                           f"pad_multiple {multiple} ({ctc.root / 'ctc.toml'} [families.{family}])")
    settings["pad_multiple"] = multiple
    return settings


def train_codec(spec: CodecSpec, ctc: CTC, task: str, rate_point: float, features: Path, out_dir: Path,
                overrides: Mapping[str, object], log: Callable[[str], None] = print) -> dict:
    """Train one model; writes a loss curve and a JSON of the history beside the checkpoint."""
    if spec.trainer is None:
        raise HarnessError(f"codec '{spec.name}' has no trainer")
    settings = training_settings(ctc, task, overrides, spec.family)
    frames = FeatureFrames(features, ctc, task, spec)
    recipe = ("" if spec.input_kind == "feature"
              else f": crop {settings['crop']}, batch {settings['batch']}, epochs {settings['epochs']}")
    log(f"training {spec.name} for {task}, {spec.rate_parameter} {rate_point:g}, on {len(frames)} features "
        f"from {features}{recipe}")
    recipe_samples = ctc.task(task).training.get("training_samples")
    if recipe_samples and recipe_samples != len(frames):  # results are not the CTC's recipe: say so
        log(f"note: the CTC's recipe trains on {recipe_samples} features; this training set has {len(frames)}")
    outcome = spec.trainer(frames, rate_point, out_dir, settings, log)
    checkpoint, history = Path(outcome["checkpoint"]), list(outcome.get("history", []))
    stem = checkpoint.name.removesuffix(".pth.tar") if checkpoint.name.endswith(".pth.tar") else checkpoint.stem
    record = {"settings": settings, "history": history}
    if outcome.get("initialized_from"):
        record["initialized_from"] = str(outcome["initialized_from"])
    atomic_write_json(out_dir / f"{stem}_history.json", record)
    if history:
        plot_history(history, out_dir / f"{stem}_loss.png", f"{spec.name} {task} {spec.rate_parameter} {rate_point:g}")
    return {"checkpoint": checkpoint, "history": history}


@plain_text()
def plot_history(history: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (λ·255²·MSE + bpp)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
