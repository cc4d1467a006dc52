"""Outlier channels and token-to-token correlation."""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from harness.analysis.common import _planes


def outlier_channels(feature: np.ndarray, top: int = 5, channel_axis: int = -1) -> dict[str, Any]:
    """Channels with the largest max |x| (over all other axes) and their values.

    Returns {"channels": [{"channel", "max_abs", "peak" (signed value of largest |x|),
    "mean", "ratio_to_median" (max|x| / median over channels of max|x|)}], "max_abs": per channel}.
    """
    x = np.moveaxis(np.asarray(feature), channel_axis, -1)
    axes = tuple(range(x.ndim - 1))
    hi = x.max(axis=axes).astype(np.float64)
    lo = x.min(axis=axes).astype(np.float64)
    mean = x.mean(axis=axes, dtype=np.float64)
    return _top_channels(hi, lo, mean, top)


def _top_channels(hi: np.ndarray, lo: np.ndarray, mean: np.ndarray, top: int) -> dict[str, Any]:
    max_abs = np.maximum(hi, -lo)
    order = np.argsort(-max_abs, kind="stable")[:top]
    median = float(np.median(max_abs))
    rows = [{"channel": int(c), "max_abs": float(max_abs[c]),
             "peak": float(hi[c] if hi[c] >= -lo[c] else lo[c]), "mean": float(mean[c]),
             "ratio_to_median": float(max_abs[c] / median) if median > 0 else math.inf} for c in order]
    return {"channels": rows, "max_abs": max_abs}


class ChannelStats:
    """Per-channel max, min, sum over a stream of features (for dataset-level outliers)."""

    def __init__(self, channel_axis: int = -1) -> None:
        self.axis = channel_axis
        self.hi = self.lo = self.sum = None
        self.n = 0

    def add(self, feature: np.ndarray) -> None:
        x = np.moveaxis(feature, self.axis, -1)
        axes = tuple(range(x.ndim - 1))
        hi, lo = x.max(axis=axes).astype(np.float64), x.min(axis=axes).astype(np.float64)
        s = x.sum(axis=axes, dtype=np.float64)
        if self.hi is None:
            self.hi, self.lo, self.sum = hi, lo, s
        else:
            np.maximum(self.hi, hi, out=self.hi)
            np.minimum(self.lo, lo, out=self.lo)
            self.sum += s
        self.n += x.size // x.shape[-1]

    def result(self, top: int = 5) -> dict[str, Any]:
        return _top_channels(self.hi, self.lo, self.sum / max(self.n, 1), top)


def token_correlation(feature: np.ndarray, skip_first: int = 0) -> dict[str, float]:
    """Correlation between neighbouring rows (tokens) of each (H, W) plane.

    row_corr: mean over adjacent pairs (t, t+1) of the Pearson correlation of the
      two token vectors across channels (what "adjacent token rows" look alike);
    lag1_autocorr: mean over channels of the lag-1 autocorrelation along tokens,
      each channel centred on its own mean (removes persistent channel offsets,
      which otherwise make every pair of rows look correlated).
    `skip_first` rows (cls / BOS token) are left out. Weighted sums are returned
    too so results over planes and samples can be pooled.
    """
    acc = TokenCorr(skip_first)
    acc.add(feature)
    return acc.result()


@dataclass
class TokenCorr:
    skip_first: int = 0
    row_sum: float = 0.0
    row_n: int = 0
    ac_sum: float = 0.0
    ac_n: int = 0

    def add(self, feature: np.ndarray) -> None:
        arr = np.asarray(feature)
        for plane in (_planes(arr) if arr.ndim > 2 else [arr]):
            x = plane[self.skip_first:]
            if x.shape[0] < 2:
                continue
            for start in range(0, x.shape[0] - 1, 256):  # row chunks with one row of overlap
                part = x[start:start + 257].astype(np.float64)
                part -= part.mean(axis=1, keepdims=True)
                norm = np.sqrt(np.einsum("ij,ij->i", part, part))
                dots = np.einsum("ij,ij->i", part[:-1], part[1:])
                den = norm[:-1] * norm[1:]
                ok = den > 0
                self.row_sum += float((dots[ok] / den[ok]).sum())
                self.row_n += int(ok.sum())
            y = x.astype(np.float64)
            y -= y.mean(axis=0)
            var = np.einsum("ij,ij->j", y, y)
            lag = np.einsum("ij,ij->j", y[:-1], y[1:])
            ok = var > 0
            self.ac_sum += float((lag[ok] / var[ok]).sum())
            self.ac_n += int(ok.sum())

    def result(self) -> dict[str, float]:
        return {"row_corr": self.row_sum / self.row_n if self.row_n else math.nan,
                "lag1_autocorr": self.ac_sum / self.ac_n if self.ac_n else math.nan,
                "pairs": self.row_n}
