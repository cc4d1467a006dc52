"""Value statistics (streamed moments) and redundancy on 10-bit codes (supplement §3.2).

IV = population variance of the 10-bit codes; GM = mean Sobel gradient magnitude
(unnormalised 3x3 Sobel, interior pixels only), per (H, W) plane.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from harness.analysis.common import _flat_chunks
from harness.ctc import Truncation
from harness.processing import Quantizer


@dataclass
class Moments:
    """Streaming count, min, max, mean and central moments M2..M4 (float64).

    Chunks are summarised exactly (two-pass within the chunk) and merged with
    the pairwise update of Chan et al. / Pébay (2008), which stays accurate for
    the heavy-tailed, large-offset values features have.
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray) -> Moments:
        for chunk in _flat_chunks(values):
            c = chunk.astype(np.float64)
            n = c.size
            mu = float(c.mean())
            lo, hi = float(c.min()), float(c.max())
            c -= mu
            d2 = c * c
            m2 = float(d2.sum())
            m4 = float(np.dot(d2, d2))
            m3 = float(np.dot(d2, c))
            self.merge(Moments(n, mu, m2, m3, m4, lo, hi))
        return self

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = other.n, other.mean, other.m2, other.m3, other.m4
            self.min, self.max = other.min, other.max
            return self
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        d_n = delta / n
        m2 = self.m2 + other.m2 + delta * d_n * na * nb
        m3 = (self.m3 + other.m3 + delta * d_n * d_n * na * nb * (na - nb)
              + 3.0 * d_n * (na * other.m2 - nb * self.m2))
        m4 = (self.m4 + other.m4 + delta * d_n**3 * na * nb * (na * na - na * nb + nb * nb)
              + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
              + 4.0 * d_n * (na * other.m3 - nb * self.m3))
        self.mean += d_n * nb
        self.m2, self.m3, self.m4 = m2, m3, m4
        self.n = int(n)
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        return self

    def result(self) -> dict[str, float]:
        if self.n == 0:
            nan = math.nan
            return {"count": 0, "max": nan, "min": nan, "mean": nan, "std": nan,
                    "skewness": nan, "excess_kurtosis": nan}
        var = self.m2 / self.n
        ok = var > 0
        return {
            "count": self.n,
            "max": self.max,
            "min": self.min,
            "mean": self.mean,
            "std": math.sqrt(var),
            "skewness": (self.m3 / self.n) / var**1.5 if ok else math.nan,
            "excess_kurtosis": (self.m4 / self.n) / var**2 - 3.0 if ok else math.nan,
        }


class FeatureStats:
    """Moments of a stream of features, overall and per slice of `layer_axis`."""

    def __init__(self, layer_axis: int | None = None) -> None:
        self.layer_axis = layer_axis
        self.layers: list[Moments] = []

    def update(self, feature: np.ndarray) -> FeatureStats:
        groups = ([feature] if self.layer_axis is None
                  else [_slice(feature, self.layer_axis, i) for i in range(feature.shape[self.layer_axis])])
        if not self.layers:
            self.layers = [Moments() for _ in groups]
        if len(groups) != len(self.layers):
            raise ValueError(f"{len(groups)} layers, earlier features had {len(self.layers)}")
        for acc, group in zip(self.layers, groups):
            acc.update(group)
        return self

    def overall(self) -> Moments:
        total = Moments()
        for m in self.layers:
            total.merge(m)
        return total

    def result(self) -> dict[str, Any]:
        return {"all": self.overall().result(),
                "layers": [m.result() for m in self.layers] if self.layer_axis is not None else []}


def _slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    key = [slice(None)] * array.ndim
    key[axis] = slice(index, index + 1)
    return array[tuple(key)]


def feature_stats(feature: np.ndarray, layer_axis: int | None = None) -> dict[str, Any]:
    """max, min, mean, std, skewness, excess kurtosis of one feature.

    Returns {"all": {...}, "layers": [{...} per index of layer_axis]} ("layers"
    is empty when layer_axis is None). dpt: layer_axis=1 of (2, 4, 1611, 1536).
    """
    return FeatureStats(layer_axis).update(feature).result()


def sobel_magnitude(frame: np.ndarray) -> np.ndarray:
    """sqrt(gx² + gy²) of the 3x3 Sobel responses on the interior (H-2, W-2) of `frame`.

    gx = [1,2,1]ᵀ ⊗ [-1,0,1] (derivative along columns, smoothing along rows),
    gy its transpose: exactly scipy.ndimage.sobel(axis=1 / axis=0) (= cv2.Sobel,
    ksize=3) restricted to pixels whose 3x3 neighbourhood is inside the frame, so
    no border mode matters. Computed separably with slices in float32, which is
    exact for 10-bit codes (|g| <= 4 * 1023).
    """
    a = np.asarray(frame)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got shape {a.shape}")
    if min(a.shape) < 3:
        return np.empty((max(a.shape[0] - 2, 0), max(a.shape[1] - 2, 0)), np.float32)
    a = a.astype(np.float32, copy=False)
    d = a[:, 2:] - a[:, :-2]                  # central difference along columns, (H, W-2)
    gx = d[:-2] + d[2:]
    gx += 2 * d[1:-1]                         # [1,2,1] smoothing along rows
    del d
    s = a[:, :-2] + a[:, 2:]
    s += 2 * a[:, 1:-1]                       # [1,2,1] smoothing along columns, (H, W-2)
    gy = s[2:] - s[:-2]                       # central difference along rows
    del s
    return np.hypot(gx, gy, out=gx)


@dataclass
class QuantStats:
    """Exact streaming IV (integer sums) and GM (sum of magnitudes) over 10-bit frames."""

    n: int = 0
    s1: int = 0
    s2: int = 0
    gm_sum: float = 0.0
    gm_count: int = 0

    def add(self, frame10: np.ndarray) -> QuantStats:
        q = np.asarray(frame10)
        if q.ndim != 2:
            raise ValueError(f"expected a 2-D frame, got shape {q.shape}")
        if q.dtype.kind not in "ui":
            raise ValueError(f"expected integer codes, got {q.dtype}")
        for chunk in _flat_chunks(q):
            c = chunk.astype(np.int64)
            self.s1 += int(c.sum())
            self.s2 += int(np.dot(c, c))
            self.n += c.size
        mag = sobel_magnitude(q)
        self.gm_sum += float(mag.sum(dtype=np.float64))
        self.gm_count += mag.size
        return self

    def merge(self, other: QuantStats) -> QuantStats:
        self.n += other.n
        self.s1 += other.s1
        self.s2 += other.s2
        self.gm_sum += other.gm_sum
        self.gm_count += other.gm_count
        return self

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {"count": 0, "mean": math.nan, "iv": math.nan, "gm": math.nan, "gm_count": 0}
        iv = (self.n * self.s2 - self.s1 * self.s1) / (self.n * self.n)  # exact integers until here
        return {"count": self.n, "mean": self.s1 / self.n, "iv": float(iv),
                "gm": self.gm_sum / self.gm_count if self.gm_count else math.nan, "gm_count": self.gm_count}


def quantized_stats(frame10: np.ndarray) -> dict[str, float]:
    """Intensity variance and mean Sobel gradient magnitude of one 2-D 10-bit frame.

    iv = population variance of the codes; gm = mean of sqrt(gx²+gy²) over the
    interior (the 1-pixel border, where the 3x3 kernel would leave the frame,
    is not counted). A constant frame gives 0 and 0; q[i, j] = j gives gm = 8.
    """
    return QuantStats().add(frame10).result()


def quantize_plane(plane: np.ndarray, lo: float, hi: float, bits: int = 10, rule: str = "floor") -> np.ndarray:
    """10-bit codes of a 2-D plane with the harness quantiser (CTC floor rule by default)."""
    out = np.empty((1, 1) + plane.shape, dtype=np.uint16)
    Quantizer(Truncation((float(lo),), (float(hi),)), bits, rule).quantize_into(plane[None, None], out)
    return out[0, 0]
