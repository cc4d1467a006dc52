"""16x16 feature blocks and their 2-D DCT magnitudes (paper Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
import math
from pathlib import Path
from typing import Any

import numpy as np

from scipy import fft as sfft

from harness.figures import plain_text, save_figure


def _block_view(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape
    bh, bw = h // size, w // size
    return frame[:bh * size, :bw * size].reshape(bh, size, bw, size)


def block_dct_sums(frame2d: np.ndarray, size: int = 16, rows_per_chunk: int = 32) -> dict[str, Any]:
    """Sums of |C| and C² over all full size x size blocks (orthonormal DCT-II), and the count."""
    view = _block_view(np.asarray(frame2d), size)
    sum_abs = np.zeros((size, size))
    sum_sq = np.zeros((size, size))
    for start in range(0, view.shape[0], rows_per_chunk):
        part = view[start:start + rows_per_chunk].astype(np.float32)  # (r, s, bw, s)
        coef = sfft.dctn(part, type=2, axes=(1, 3), norm="ortho", overwrite_x=True)
        sum_abs += np.abs(coef).sum(axis=(0, 2), dtype=np.float64)
        sum_sq += np.square(coef).sum(axis=(0, 2), dtype=np.float64)
    return {"sum_abs": sum_abs, "sum_sq": sum_sq, "blocks": view.shape[0] * view.shape[2], "size": size}


def energy_compaction(sum_sq: np.ndarray, low: int = 4) -> dict[str, float]:
    total = float(sum_sq.sum())
    if total == 0:
        return {"dc_energy": math.nan, "low_energy": math.nan}
    return {"dc_energy": float(sum_sq[0, 0]) / total, "low_energy": float(sum_sq[:low, :low].sum()) / total}


def dct_blocks(frame2d: np.ndarray, size: int = 16, count: int = 4, seed: int = 0) -> dict[str, Any]:
    """`count` deterministically chosen full blocks of `frame2d`, their |DCT-II| (ortho),
    and the mean |DCT| / energy compaction over all full blocks of the frame."""
    frame = np.asarray(frame2d)
    view = _block_view(frame, size)
    bh, bw = view.shape[0], view.shape[2]
    if bh * bw == 0:
        raise ValueError(f"frame {frame.shape} has no full {size}x{size} block")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(bh * bw, size=min(count, bh * bw), replace=False))
    positions = [(int(p // bw) * size, int(p % bw) * size) for p in picks]
    blocks = np.stack([frame[r:r + size, c:c + size] for r, c in positions]).astype(np.float64)
    coef = np.abs(sfft.dctn(blocks, type=2, axes=(1, 2), norm="ortho"))
    sums = block_dct_sums(frame, size)
    return {"positions": positions, "blocks": blocks, "dct": coef,
            "mean_abs": sums["sum_abs"] / sums["blocks"], "mean_sq": sums["sum_sq"] / sums["blocks"],
            "n_blocks": sums["blocks"], **energy_compaction(sums["sum_sq"])}


@plain_text()
def plot_dct_blocks(panels: Sequence[tuple[str, dict[str, Any]]], path: str | Path, title: str) -> Path:
    """Block (values) and log10 |DCT| side by side, one column pair per labelled result."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(p[1]["positions"]) for p in panels)
    cols = 2 * len(panels)
    height = 1.9 * rows + 0.8
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.9 * cols, 5.0), height), squeeze=False)
    for k, (label, res) in enumerate(panels):
        for r in range(rows):
            ax_b, ax_d = axes[r, 2 * k], axes[r, 2 * k + 1]
            if r >= len(res["positions"]):
                ax_b.axis("off"), ax_d.axis("off")
                continue
            block, mag = res["blocks"][r], res["dct"][r]
            ax_b.imshow(block, cmap="viridis", interpolation="nearest")
            ax_d.imshow(np.log10(mag + 1e-6), cmap="magma", interpolation="nearest")
            y, x = res["positions"][r]
            ax_b.set_title(f"{label} @({y},{x})", fontsize=7)
            ax_d.set_title("log10 |DCT|", fontsize=7)
            for ax in (ax_b, ax_d):
                ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.7 / height, hspace=0.35, wspace=0.1)
    path = Path(path)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path


@plain_text()
def plot_mean_dct(panels: Sequence[tuple[str, np.ndarray, dict[str, float]]], path: str | Path, title: str) -> Path:
    """log10 of the mean |DCT| over all blocks, one panel per label, with compaction numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.2), squeeze=False)
    for ax, (label, mean_abs, comp) in zip(axes[0], panels):
        im = ax.imshow(np.log10(mean_abs + 1e-9), cmap="magma", interpolation="nearest")
        ax.set_title(f"{label}\nDC {comp['dc_energy']:.1%}, 4x4 {comp['low_energy']:.1%}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path
