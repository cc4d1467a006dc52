"""Fixed-edge value histograms and CDFs: original vs truncated vs reconstructed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.common import _flat_chunks, original_range, task_range
from harness.analysis.stats import _slice
from harness.ctc import CTC
from harness.figures import plain_log_ticks, plain_text, save_figure


def value_histogram(values: np.ndarray, edges: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Add `values` into counts over uniform `edges`: [below, bin_0 .. bin_{B-1}, above].

    Bins are [e_i, e_{i+1}) with the last one closed, as numpy.histogram;
    values below edges[0] / above edges[-1] are counted apart, so the counts
    always sum to the number of values. Returns `out` (int64, len(edges) + 1).
    """
    edges = np.asarray(edges, dtype=np.float64)
    bins = edges.size - 1
    if out is None:
        out = np.zeros(bins + 2, dtype=np.int64)
    inv = bins / (edges[-1] - edges[0])
    for chunk in _flat_chunks(values):
        x = chunk.astype(np.float64)
        f = (x - edges[0]) * inv
        np.floor(f, out=f)
        np.clip(f, 0, bins - 1, out=f)
        k = f.astype(np.int64)
        # one-step fix of float rounding next to an edge; also sends values
        # outside [e_0, e_B] to -1 / B (numpy.histogram does the same fix)
        k -= x < edges[k]
        k += x >= edges[k + 1]
        k -= x == edges[-1]  # the last bin is closed
        k += 1
        out += np.bincount(k, minlength=bins + 2)
    return out


def histogram_cdf(counts: np.ndarray) -> np.ndarray:
    """CDF at each upper bin edge (below-range mass included), len(counts) - 2 values."""
    total = counts.sum()
    return np.cumsum(counts)[1:-1] / max(total, 1)


def histogram_edges(ctc: CTC, task: str, bins: int = 400, margin: float = 0.02,
                    family: str = "handcrafted", zoom: float = 0.25) -> list[dict[str, Any]]:
    """Per layer: wide edges over the CTC's original range (+margin) and zoom edges around
    the family's truncation range (+zoom of its span), with both ranges."""
    original = original_range(ctc, task)
    trunc = task_range(ctc, task, family)
    layers = max(len(original.lo), len(trunc.lo))
    out = []
    for i in range(layers):
        lo, hi = original.lo[min(i, len(original.lo) - 1)], original.hi[min(i, len(original.hi) - 1)]
        tlo, thi = trunc.lo[min(i, len(trunc.lo) - 1)], trunc.hi[min(i, len(trunc.hi) - 1)]
        span, tspan = hi - lo, thi - tlo
        out.append({"wide": np.linspace(lo - margin * span, hi + margin * span, bins + 1),
                    "zoom": np.linspace(tlo - zoom * tspan, thi + zoom * tspan, bins + 1),
                    "original": (lo, hi), "trunc": (tlo, thi)})
    return out


class HistogramSet:
    """Counts per (series, layer, view) with fixed edges; series: original/truncated/reconstructed."""

    def __init__(self, layer_edges: list[dict[str, Any]]) -> None:
        self.edges = layer_edges
        self.counts: dict[tuple[str, int, str], np.ndarray] = {}

    def add(self, series: str, layer: int, values: np.ndarray) -> None:
        for view in ("wide", "zoom"):
            key = (series, layer, view)
            self.counts[key] = value_histogram(values, self.edges[layer][view], self.counts.get(key))

    def add_feature(self, feature: np.ndarray, layer_axis: int | None,
                    reconstructed: np.ndarray | None = None) -> None:
        """original, truncated (clip to the family range, chunk by chunk) and reconstructed."""
        n_layers = len(self.edges)
        for layer in range(n_layers):
            part = feature if n_layers == 1 else _slice(feature, layer_axis, layer)
            tlo, thi = self.edges[layer]["trunc"]
            for chunk in _flat_chunks(part):
                self.add("original", layer, chunk)
                self.add("truncated", layer, np.clip(chunk, tlo, thi))
            if reconstructed is not None:
                rpart = reconstructed if n_layers == 1 else _slice(reconstructed, layer_axis, layer)
                self.add("reconstructed", layer, rpart)

    def series(self) -> list[str]:
        return [s for s in ("original", "truncated", "reconstructed") if (s, 0, "wide") in self.counts]

    def outside(self, layer: int) -> tuple[int, int]:
        """(below, above) the wide edges for the original series: values outside the CTC range."""
        c = self.counts.get(("original", layer, "wide"))
        return (int(c[0]), int(c[-1])) if c is not None else (0, 0)


SERIES_STYLE = {"original": dict(color="tab:green", lw=1.2), "truncated": dict(color="tab:red", lw=1.0),
                "reconstructed": dict(color="black", lw=1.0, ls="--")}


@plain_text()
def plot_value_histograms(hist: HistogramSet, path: str | Path, title: str,
                          layer_names: Sequence[str] | None = None) -> Path:
    """Per layer: frequency over the original range (log y), frequency around the
    truncation range (log y), and the CDF there. Writes a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(hist.edges)
    height = 2.7 * n + 0.9
    fig, axes = plt.subplots(n, 3, figsize=(13, height), squeeze=False)
    for layer in range(n):
        name = layer_names[layer] if layer_names else ""
        tlo, thi = hist.edges[layer]["trunc"]
        for col, view in enumerate(("wide", "zoom", "cdf")):
            ax = axes[layer, col]
            edges = hist.edges[layer]["zoom" if view == "cdf" else view]
            for s in hist.series():
                counts = hist.counts[(s, layer, "zoom" if view == "cdf" else view)]
                if view == "cdf":
                    ax.plot(edges[1:], histogram_cdf(counts), label=s, **SERIES_STYLE[s])
                else:
                    freq = counts[1:-1] / max(counts.sum(), 1)
                    ax.stairs(np.where(freq > 0, freq, np.nan), edges, label=s, alpha=0.85, **SERIES_STYLE[s])
            if view != "cdf":
                ax.set_yscale("log")
                plain_log_ticks(ax.yaxis)
                ax.set_ylabel("frequency")
            else:
                ax.set_ylabel("CDF")
                ax.set_ylim(-0.02, 1.02)
            for bound in (tlo, thi):
                ax.axvline(bound, color="grey", lw=0.6, ls=":")
            ax.set_xlim(edges[0], edges[-1])
            label = {"wide": "original range", "zoom": "truncation window", "cdf": "CDF, truncation window"}[view]
            ax.set_title(f"{name} {label}".strip(), fontsize=9)
            ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.35 / height, top=1 - 0.75 / height, hspace=0.5, wspace=0.25)
    path = Path(path)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path
