"""Pictures for reports: rate-accuracy and rate-distortion curves (matplotlib, no display).

Every plotting function of the harness (here, in training and in analysis) draws under
`plain_text()`, so a `$` in a codec name, curve label or title is shown as written,
never parsed as TeX, and stores its picture with `save_figure` (atomic, honours the umask).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
import contextlib
import hashlib
import io
from pathlib import Path
from typing import Any

from harness.curves import Curve
from harness.npyio import atomic_write_bytes

#: the distortion axis of rate-distortion pictures: feature MSE in dB, as BD-rates take it
#: (harness.curves.psnr_db; no peak: it would only shift every curve alike)
PSNR_LABEL = "−10·log10(MSE) [dB]"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class plain_text(contextlib.ContextDecorator):
    """Text drawn inside (a `with` block or a decorated function) is never TeX: matplotlib's
    mathtext would fail on a label such as 'a$_$b' and typeset '$5 or $6' as math.
    matplotlib is imported on entry, not when a module using the decorator is imported."""

    def _recreate_cm(self) -> plain_text:  # a fresh context per decorated call (nesting, threads)
        return plain_text()

    def __enter__(self) -> plain_text:
        import matplotlib

        self._rc = matplotlib.rc_context({"text.parse_math": False, "text.usetex": False})
        self._rc.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._rc.__exit__(*exc)


def plain_log_ticks(axis: Any) -> None:
    """Tick labels of a log axis that need no TeX: matplotlib's defaults are mathtext, which
    `plain_text()` would show as raw `$\\mathdefault{10^{-2}}$`. Call after setting the log scale.
    Decades are labelled as plain numbers (0.01, 0.1, 1); the 2 and 5 between them only when the
    axis spans less than about two decades, where they do not collide."""
    import math

    from matplotlib import ticker

    def decade(value: float, _position: int) -> str:
        return f"{value:g}"

    def between(value: float, _position: int) -> str:
        low, high = sorted(axis.get_view_interval())
        if low <= 0 or math.log10(high / low) > 2.2:
            return ""
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9), 6)
        return f"{value:g}" if mantissa in (2.0, 5.0) else ""

    axis.set_major_formatter(ticker.FuncFormatter(decade))
    axis.set_minor_formatter(ticker.FuncFormatter(between))


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Render into memory, then write atomically: a reader never sees half a picture, a full disk
    is one line naming the file, and the file honours the umask."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or None, **savefig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _save_png_and_svg(fig: Any, path: Path) -> list[Path]:
    plt = _pyplot()
    try:
        return [save_figure(fig, path.with_suffix(suffix)) for suffix in (".png", ".svg")]
    finally:
        plt.close(fig)


# matplotlib's tab10, and markers that stay apart at 5-pixel size
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
ANCHOR_MARKERS = "osD^vPXp"
# The salt of the name hash: the first that gives the anchors the harness ships (paper-vtm,
# paper-hyperprior, mini-vtm, mini-vvc, mini-klt, mini-hyperprior) six different colours and markers.
_ANCHOR_SALT = "23:"


def anchor_style(name: str) -> dict[str, str]:
    """An anchor's colour and marker, from its name alone: the same anchor looks the same in every
    picture and on every page, whatever other curves are drawn and in which order. Solid line,
    filled marker (other curves are dashed with open markers, see `curve_plot`)."""
    digest = hashlib.sha256((_ANCHOR_SALT + name).encode("utf-8", "surrogatepass")).digest()
    return {"color": PALETTE[digest[0] % len(PALETTE)], "marker": ANCHOR_MARKERS[digest[1] % len(ANCHOR_MARKERS)],
            "linestyle": "-"}


def curve_styles(names: Sequence[str], anchors: Collection[str]) -> list[dict[str, str]]:
    """Anchors in their own style; other curves dashed, open markers, in the colours no anchor here uses."""
    if not anchors:  # the pictures of runs without anchors keep their plain cycle
        return [{"marker": "os^Dv"[i % 5]} for i in range(len(names))]
    taken = {anchor_style(n)["color"] for n in names if n in anchors}
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    styles, others = [], 0
    for name in names:
        if name in anchors:
            styles.append(anchor_style(name))
        else:
            styles.append({"color": free[others % len(free)], "marker": "os^Dv"[others % 5], "linestyle": "--",
                           "markerfacecolor": "none"})
            others += 1
    return styles


@plain_text()
def curve_plot(task: str, curves: Sequence[Curve], y: str, ylabel: str, path: Path,
               transform=None, logx: bool = True, anchors: Collection[str] = ()) -> list[Path]:
    """One line per curve of `y` against BPFP for `task`; writes PNG and SVG, returns both paths.
    Curves named in `anchors` are drawn in their `anchor_style`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    for curve, style in zip(curves, curve_styles([c.name for c in curves], set(anchors))):
        points = curve.task(task)
        if y not in points or points[y].isna().all():
            continue
        values = points[y] if transform is None else transform(points[y])
        ax.plot(points.bpfp, values, label=curve.name, **style)
    if logx:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel("BPFP (bits per feature point)")
    ax.set_ylabel(ylabel)
    ax.set_title(task)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save_png_and_svg(fig, path)


@plain_text()
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
    return _save_png_and_svg(fig, path)
