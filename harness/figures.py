"""Pictures for reports: rate-accuracy and rate-distortion curves (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.curves import Curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_plot(task: str, curves: Sequence[Curve], y: str, ylabel: str, path: Path,
               transform=None, logx: bool = True) -> list[Path]:
    """One line per curve of `y` against BPFP for `task`; writes PNG and SVG, returns both paths."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for index, curve in enumerate(curves):
        points = curve.task(task)
        if y not in points or points[y].isna().all():
            continue
        values = points[y] if transform is None else transform(points[y])
        ax.plot(points.bpfp, values, marker="os^Dv"[index % 5], label=curve.name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("BPFP (bits per feature point)")
    ax.set_ylabel(ylabel)
    ax.set_title(task)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".svg"):
        out = path.with_suffix(suffix)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        written.append(out)
    plt.close(fig)
    return written


def scatter_fit(task: str, x, y, r2: float, xlabel: str, ylabel: str, path: Path) -> list[Path]:
    """Distortion-accuracy scatter with its least-squares line (paper Table 5's R²)."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    ax.scatter(x, y)
    if len(x) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(min(x), max(x), 50)
        ax.plot(xs, slope * xs + intercept, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task}: R² = {r2:.3f}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".svg"):
        out = path.with_suffix(suffix)
        fig.savefig(out)
        written.append(out)
    plt.close(fig)
    return written
