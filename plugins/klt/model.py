"""The per-task transform of the `klt` codec: mean and eigenvectors of the channel covariance.

A model is three files in one folder (`<models>/<task>/`), all read without pickle:

    klt_mean.npy       (G, D) float64    mean of each channel, per group
    klt_basis.npy      (G, D, D) float32 analysis rows = eigenvectors, by decreasing variance
    klt.json           layout (which axis holds the channels), the eigenvalues, what it was trained on
    klt_synthesis.npy  (G, D, D) float32 synthesis rows; only for a transform fitted in a distortion
                       metric (tail.py), where analysis and synthesis are no longer each other's transpose

D is the channel count. Channels are the last axis (DINOv2 and Llama packings: tokens on axis 2)
or axis 1 (SD3 latents: every pixel is a token). G is the number of groups with a transform of
their own: the layers on axis 1 of a channels-last feature (dpt's 4 ViT layers), else 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
import json
from pathlib import Path
import zlib

import numpy as np

from harness import CodecError, HarnessError, atomic_save_npy, atomic_write_json, load_npy

FORMAT = 1
MEAN, BASIS, META, SYNTHESIS = "klt_mean.npy", "klt_basis.npy", "klt.json", "klt_synthesis.npy"
FILES = (MEAN, BASIS, META)  # and SYNTHESIS when the model has one
TRAIN_HINT = "harness train --codec klt --task {task} --dataset NAME (or --features DIR)"


def channel_axis_for(packing: str) -> int:
    """Where a task's channels are: axis 1 for SD3 latents, else the last axis."""
    return 1 if packing == "sd3" else 3


def groups_of(shape: tuple[int, ...], channel_axis: int) -> int:
    """Groups with their own transform: the layers (axis 1) of a channels-last feature."""
    return shape[1] if channel_axis == 3 else 1


def to_tokens(feature: np.ndarray, channel_axis: int) -> np.ndarray:
    """(N, C, H, W) -> (G, tokens, D): one row per token, channels last (a view when possible)."""
    if feature.ndim != 4:
        raise CodecError(f"klt: expects a 4-D feature (N, C, H, W), got shape {feature.shape}")
    if channel_axis == 3:
        n, c, h, w = feature.shape
        return feature.transpose(1, 0, 2, 3).reshape(c, n * h, w)
    n, c, h, w = feature.shape
    return feature.transpose(0, 2, 3, 1).reshape(1, n * h * w, c)


def from_tokens(tokens: np.ndarray, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """Inverse of `to_tokens`: a contiguous (N, C, H, W) array."""
    n, c, h, w = shape
    if channel_axis == 3:
        return np.ascontiguousarray(tokens.reshape(c, n, h, w).transpose(1, 0, 2, 3))
    return np.ascontiguousarray(tokens.reshape(n, h, w, c).transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class KltModel:
    mean: np.ndarray       # (G, D) float64
    basis: np.ndarray      # (G, D, D) float32, rows are components: y = basis @ (x - mean)
    channel_axis: int
    meta: dict
    synthesis: np.ndarray | None = None  # (G, D, D) float32, x = mean + synthesis.T @ y; None: basis

    @property
    def synthesis_rows(self) -> np.ndarray:
        return self.basis if self.synthesis is None else self.synthesis

    @property
    def groups(self) -> int:
        return self.basis.shape[0]

    @property
    def channels(self) -> int:
        return self.basis.shape[1]

    def fingerprint(self) -> int:
        """CRC-32 over layout, mean and basis: the bitstream names the model it was coded with."""
        crc = zlib.crc32(np.asarray([self.channel_axis, *self.basis.shape], dtype="<i8").tobytes())
        crc = zlib.crc32(np.ascontiguousarray(self.mean, dtype="<f8").tobytes(), crc)
        crc = zlib.crc32(np.ascontiguousarray(self.basis, dtype="<f4").tobytes(), crc)
        if self.synthesis is not None:
            crc = zlib.crc32(np.ascontiguousarray(self.synthesis, dtype="<f4").tobytes(), crc)
        return crc

    def check_shape(self, shape: tuple[int, ...], task: str) -> None:
        """The feature must have the model's channels and groups."""
        d = shape[self.channel_axis]
        g = groups_of(shape, self.channel_axis)
        if d != self.channels or g != self.groups:
            raise CodecError(f"klt: the '{task}' model has {self.groups} group(s) of {self.channels} channels "
                             f"(axis {self.channel_axis}); a feature of shape {tuple(shape)} has {g} of {d}")

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(folder / MEAN, np.ascontiguousarray(self.mean, dtype=np.float64))
        atomic_save_npy(folder / BASIS, np.ascontiguousarray(self.basis, dtype=np.float32))
        if self.synthesis is not None:
            atomic_save_npy(folder / SYNTHESIS, np.ascontiguousarray(self.synthesis, dtype=np.float32))
        else:
            (folder / SYNTHESIS).unlink(missing_ok=True)  # left by an earlier metric-fitted model
        atomic_write_json(folder / META, {**self.meta, "format": FORMAT, "channel_axis": self.channel_axis,
                                          "synthesis": self.synthesis is not None})


def model_dir(models: str | Path, task: str) -> Path:
    return Path(models) / task


def model_paths(models: str | Path, task: str) -> list[Path]:
    """The files of a task's model; one error naming the first missing file and how to make it."""
    folder = model_dir(models, task)
    paths = [folder / name for name in FILES]
    for path in paths:
        if not path.is_file():
            out = "" if Path(models) == Path("checkpoints") else f" --out {folder}"
            raise HarnessError(f"{path}: klt model file not found; make the '{task}' model with: "
                               + TRAIN_HINT.format(task=task) + out)
    return paths + ([folder / SYNTHESIS] if (folder / SYNTHESIS).is_file() else [])


def load_model(models: str | Path, task: str) -> KltModel:
    """Read a task's model (no pickle) and check that its files agree with each other."""
    mean_path, basis_path, meta_path = model_paths(models, task)[:3]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{meta_path}: not a readable klt model description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("channel_axis") not in (1, 3):
        raise HarnessError(f"{meta_path}: not a klt model description of format {FORMAT} "
                           "(needs 'format' and 'channel_axis' 1 or 3)")
    mean, basis = load_npy(mean_path), load_npy(basis_path)
    if basis.ndim != 3 or basis.shape[1] != basis.shape[2] or basis.dtype != np.float32:
        raise HarnessError(f"{basis_path}: expected a (G, D, D) float32 basis, got {basis.shape} {basis.dtype}")
    if mean.shape != basis.shape[:2] or mean.dtype != np.float64:
        raise HarnessError(f"{mean_path}: expected a {basis.shape[:2]} float64 mean, got {mean.shape} {mean.dtype}")
    synthesis = None
    if meta.get("synthesis"):
        synthesis_path = mean_path.parent / SYNTHESIS
        if not synthesis_path.is_file():
            raise HarnessError(f"{synthesis_path}: klt model file not found ({meta_path.name} says the model has "
                               f"one); make the '{task}' model again with: " + TRAIN_HINT.format(task=task))
        synthesis = load_npy(synthesis_path)
        if synthesis.shape != basis.shape or synthesis.dtype != np.float32:
            raise HarnessError(f"{synthesis_path}: expected a {basis.shape} float32 synthesis, "
                               f"got {synthesis.shape} {synthesis.dtype}")
    arrays = (mean, basis) if synthesis is None else (mean, basis, synthesis)
    if not all(np.isfinite(a).all() for a in arrays):
        raise HarnessError(f"{mean_path.parent}: the klt model holds NaN or Inf values")
    return KltModel(mean, basis, int(meta["channel_axis"]), meta, synthesis)


# ---------------------------------------------------------------- training

class _Moments:
    """Running count, mean and scatter of token rows per group (float64, shifted for stability)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.scatter: np.ndarray | None = None

    def add(self, tokens: np.ndarray) -> None:
        x = tokens.astype(np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=1, keepdims=True)
            self.sum = np.zeros(x.shape[::2])
            self.scatter = np.zeros((x.shape[0], x.shape[2], x.shape[2]))
        elif x.shape[::2] != self.sum.shape:
            raise HarnessError(f"klt: training features disagree: {x.shape[0]} group(s) of {x.shape[2]} channels "
                               f"after {self.sum.shape[0]} of {self.sum.shape[1]}")
        x -= self.shift
        self.count += x.shape[1]
        self.sum += x.sum(axis=1)
        for g in range(x.shape[0]):
            self.scatter[g] += x[g].T @ x[g]

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.sum / self.count
        cov = self.scatter / self.count - m[:, :, None] * m[:, None, :]
        return m + self.shift[:, 0], cov


def metric_root(metric: np.ndarray, floor: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """A = M^(1/2) and its inverse for a PSD metric M, eigenvalues floored at `floor` x the largest and
    scaled to a geometric mean of 1 (the quantization cell keeps its volume, so steps keep their rates)."""
    values, vectors = np.linalg.eigh((metric + metric.T) / 2)
    root = np.sqrt(np.maximum(values, floor * max(values.max(), 0.0)))
    if not root.all():
        raise HarnessError("klt: the distortion metric is zero")
    root /= np.exp(np.mean(np.log(root)))
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def fit(features: Iterable[np.ndarray], channel_axis: int, log: Callable[[str], None] = print,
        metric: np.ndarray | None = None) -> KltModel:
    """The KLT of the token rows of `features`: per group, mean and eigenvectors of the covariance.

    With a distortion metric M (D x D, positive semi-definite; from tail.py), the KLT is taken of
    M^(1/2) x, so that one uniform step minimizes the error x^T M x instead of the squared error.
    """
    moments, shapes = _Moments(), 0
    for feature in features:
        moments.add(to_tokens(np.asarray(feature), channel_axis))
        shapes += 1
    if not moments.count:
        raise HarnessError("klt: no training features")
    mean, cov = moments.mean_and_covariance()
    root, inverse = metric_root(metric) if metric is not None else (None, None)
    if root is not None:
        cov = root @ cov @ root
    values, vectors = np.linalg.eigh(cov)  # ascending, columns
    order = np.argsort(-values, axis=1, kind="stable")
    values = np.take_along_axis(values, order, axis=1)
    basis = np.take_along_axis(vectors, order[:, None, :], axis=2).transpose(0, 2, 1)  # rows by decreasing variance
    # a fixed sign (largest entry positive) so the same data gives the same file with any LAPACK
    pivot = np.take_along_axis(basis, np.abs(basis).argmax(axis=2)[:, :, None], axis=2)
    basis = basis * np.where(pivot < 0, -1.0, 1.0)
    synthesis = None
    if root is not None:  # analysis rows v^T A, synthesis rows v^T A^-1
        basis, synthesis = basis @ root, (basis @ inverse).astype(np.float32)
    values = np.maximum(values, 0.0)
    total = values.sum(axis=1, keepdims=True)
    energy = np.cumsum(values, axis=1) / np.where(total > 0, total, 1.0)
    for g in range(values.shape[0]):
        keep = [int(np.searchsorted(energy[g], p)) + 1 for p in (0.5, 0.9, 0.99)]
        log(f"group {g}: {basis.shape[1]} channels, {moments.count} tokens from {shapes} features; "
            f"components for 50/90/99 % of the variance: {keep[0]}/{keep[1]}/{keep[2]}")
    meta = {"groups": int(basis.shape[0]), "channels": int(basis.shape[1]), "features": shapes,
            "tokens_per_group": int(moments.count),
            "variance": [[float(v) for v in row] for row in values]}
    return KltModel(mean, basis.astype(np.float32), channel_axis, meta, synthesis)
