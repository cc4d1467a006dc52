"""Pre- and post-processing exactly as the CTC defines them (ctc/, CTC.md).

Handcrafted family: truncate -> quantize to 10 bit -> pack to one 2-D
uint16 frame; inverse: unpack -> de-quantize. Learned family:
truncate -> normalize to [0, 1] (float32) -> pack; inverse: unpack -> clamp to
[0, 1] -> de-normalize.

Normalization is the official quantizer with 1 bit, bit for bit: x01 =
(clip(x) - lo) * s and x^ = x01 / s + lo in float32, where s = 1 / (hi - lo) is
computed in double and rounded to float32 once (the official code multiplies by
a Python-float scale; dividing by hi - lo instead differs by one float32 step
in up to 45 % of the values).

Quantization rule "floor" is the official one: q = floor((x - lo) * scale) with
scale = (2^B - 1) / (hi - lo), computed in the feature's own dtype (float16 for
tti, as the official code does), and x^ = q / scale + lo with no half-step.
"unbiased" rounds to nearest instead; it is a named option, never the default.
Ranges apply per layer (axis 1) when the CTC gives several (dpt).

The functions work in few passes over the data and write into preallocated
arrays: a dpt feature is 79 MB and must not be copied many times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.ctc import CTC, Truncation
from harness.errors import HarnessError


@dataclass(frozen=True)
class Quantizer:
    """Uniform quantizer of the CTC: ranges (per layer or global), bits, rule."""

    trunc: Truncation
    bit_depth: int = 10
    rule: str = "floor"

    def __post_init__(self) -> None:
        if self.rule not in ("floor", "unbiased"):
            raise HarnessError(f"unknown quantization rule '{self.rule}'; available: floor, unbiased")

    def _bounds(self, dtype: np.dtype, layers: int, bit_depth: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """lo, hi, scale = (2^B - 1) / (hi - lo) in `dtype`, shaped (1, C, 1, 1) to broadcast over layers.

        The scale is computed in double and rounded to `dtype` once, as the official scripts'
        Python-float scale is when it meets a float32 (or float16) array.
        """
        lo = np.asarray(self.trunc.lo, dtype=np.float64)
        hi = np.asarray(self.trunc.hi, dtype=np.float64)
        if lo.size == 1:
            lo, hi = np.repeat(lo, layers), np.repeat(hi, layers)
        elif lo.size != layers:
            raise HarnessError(f"{lo.size} per-layer ranges for a feature with {layers} layers (axis 1)")
        scale = (2 ** (bit_depth or self.bit_depth) - 1) / (hi - lo)
        shape = (1, layers, 1, 1)
        return (lo.astype(dtype).reshape(shape), hi.astype(dtype).reshape(shape),
                scale.astype(dtype).reshape(shape))

    def quantize_into(self, feature: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Truncate + quantize `feature` (N, C, H, W) into integer array `out` (any layout view).

        Arithmetic is in the feature's dtype (float16 stays float16, as in the
        official code); the float->int cast truncates toward zero = floor here.
        """
        dtype = feature.dtype
        lo, hi, scale = self._bounds(dtype, feature.shape[1])
        work = np.clip(feature, lo, hi)  # the one float copy
        np.subtract(work, lo, out=work)
        np.multiply(work, scale, out=work)
        if self.rule == "unbiased":
            np.rint(work, out=work)
        # a float16 value rounding up to 1023.x can only come from hi itself; clamp for safety
        np.minimum(work, 2**self.bit_depth - 1, out=work)
        np.copyto(out, work, casting="unsafe")
        return out

    def dequantize_into(self, q: np.ndarray, out: np.ndarray) -> np.ndarray:
        """x^ = q / scale + lo into `out` (float32), per layer; no half-step offset."""
        lo, _, scale = self._bounds(np.dtype(np.float32), out.shape[1])
        np.divide(q, scale, out=out, casting="unsafe")
        np.add(out, lo, out=out)
        return out

    def step(self) -> np.ndarray:
        """Quantization step per layer, (hi - lo) / (2^B - 1)."""
        return (np.asarray(self.trunc.hi) - np.asarray(self.trunc.lo)) / (2**self.bit_depth - 1)


# ---------------------------------------------------------------- packing

def packed_shape(shape: tuple[int, ...], packing: str) -> tuple[int, int]:
    """(height, width) of the packed frame for a feature of `shape` (N, C, H, W)."""
    n, c, h, w = shape
    if packing == "dinov2":
        return n * h, c * w
    if packing == "llama3":
        if n != 1 or c != 1:
            raise HarnessError(f"llama3 packing needs N = C = 1, got shape {shape}")
        return h, w
    if packing == "sd3":
        side = int(round(c**0.5))
        if side * side != c:
            raise HarnessError(f"sd3 packing needs a square channel count, got {c}")
        if n != 1:
            raise HarnessError(f"sd3 packing needs N = 1, got shape {shape}")
        return side * h, side * w
    raise HarnessError(f"unknown packing '{packing}'; available: dinov2, llama3, sd3")


def frame_view(frame: np.ndarray, shape: tuple[int, ...], packing: str) -> np.ndarray:
    """A writable view of the 2-D `frame` whose axes match `feature_view(feature)`.

    Packing is a permutation, so this one view serves both directions: writing
    the feature into it packs, reading it unpacks.
      dinov2: frame (N*H, C*W) seen as (N, C, H, W) = the (N, H, C, W) transpose
      llama3: frame (T, 4096) seen as (1, 1, T, 4096)
      sd3:    frame (4*128, 4*128) seen as (4, 4, 128, 128): channel c at tile
              row c // 4, column c % 4
    """
    n, c, h, w = shape
    if packing == "dinov2":
        return frame.reshape(n, h, c, w).transpose(0, 2, 1, 3)
    if packing == "llama3":
        return frame.reshape(1, 1, h, w)
    if packing == "sd3":
        side = int(round(c**0.5))
        return frame.reshape(side, h, side, w).transpose(0, 2, 1, 3)
    raise HarnessError(f"unknown packing '{packing}'; available: dinov2, llama3, sd3")


def feature_view(feature: np.ndarray, packing: str) -> np.ndarray:
    """The feature with the axes `frame_view` uses (sd3: channels as a 4x4 grid)."""
    if packing == "sd3":
        n, c, h, w = feature.shape
        side = int(round(c**0.5))
        return feature.reshape(side, side, h, w)
    return feature


def pack(feature: np.ndarray, packing: str) -> np.ndarray:
    """Pack (N, C, H, W) into one contiguous 2-D frame (same dtype)."""
    frame = np.empty(packed_shape(feature.shape, packing), dtype=feature.dtype)
    frame_view(frame, feature.shape, packing)[...] = feature_view(feature, packing)
    return frame


def unpack(frame: np.ndarray, shape: tuple[int, ...], packing: str) -> np.ndarray:
    """Inverse of `pack`: a contiguous (N, C, H, W) array (same dtype)."""
    if frame.shape != packed_shape(shape, packing):
        raise HarnessError(f"frame {frame.shape} does not unpack to {shape}; expected {packed_shape(shape, packing)}")
    return np.ascontiguousarray(frame_view(frame, shape, packing)).reshape(shape)


# ---------------------------------------------------------------- family pipelines

@dataclass(frozen=True)
class Preprocessor:
    """The CTC pipeline of one task for one codec family."""

    packing: str
    quantizer: Quantizer
    kind: str  # "frame10" (quantize) or "frame01" (normalize)
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def for_task(cls, ctc: CTC, task: str, family: str, kind: str, shape: tuple[int, ...],
                 dtype: np.dtype | str, rule: str | None = None) -> Preprocessor:
        """The pipeline of `task` with the truncation ranges of `family`, producing `kind`."""
        if kind not in ("frame10", "frame01"):
            raise HarnessError(f"no CTC pre-processing produces input kind '{kind}'")
        family = ctc.family(family)
        wanted = ctc.families[family].get("input")
        if wanted and wanted != kind:  # a family's ranges are meant for one kind of codec input
            raise HarnessError(f"codec family '{family}' codes {wanted} frames in CTC {ctc.name} "
                               f"({ctc.root / 'ctc.toml'} [families.{family}]), not {kind}")
        spec = ctc.task(task)
        quantizer = Quantizer(ctc.truncation(task, family), ctc.bit_depth, rule or ctc.default_quant_rule)
        return cls(spec.packing, quantizer, kind, tuple(shape), np.dtype(dtype))

    @property
    def frame_shape(self) -> tuple[int, int]:
        return packed_shape(self.shape, self.packing)

    def forward(self, feature: np.ndarray) -> np.ndarray:
        """Feature -> codec input frame (uint16 10-bit, or float32 in [0, 1])."""
        if self.kind == "frame10":
            frame = np.empty(self.frame_shape, dtype=np.uint16)
            self.quantizer.quantize_into(feature_view(feature, self.packing),
                                         frame_view(frame, self.shape, self.packing))
            return frame
        return pack(self.normalize(feature), self.packing)

    def inverse(self, frame: np.ndarray) -> np.ndarray:
        """Codec output frame -> reconstructed feature in the stored dtype."""
        view = frame_view(frame, self.shape, self.packing)
        out = np.empty(self.shape, dtype=np.float32)
        target = feature_view(out, self.packing)
        if self.kind == "frame10":
            self.quantizer.dequantize_into(view, target)
        else:
            self.denormalize_into(view, target)
        return out if self.dtype == np.float32 else out.astype(self.dtype)

    def normalize(self, feature: np.ndarray) -> np.ndarray:
        """(clip(x) - lo) * float32(1 / (hi - lo)) in float32, per layer (the official 1-bit quantizer)."""
        lo, hi, scale = self.quantizer._bounds(np.dtype(np.float32), feature.shape[1], bit_depth=1)
        work = np.clip(feature.astype(np.float32, copy=False), lo, hi)
        np.subtract(work, lo, out=work)
        np.multiply(work, scale, out=work)
        return work

    def denormalize_into(self, x01: np.ndarray, out: np.ndarray) -> np.ndarray:
        """clamp(x01, 0, 1) / float32(1 / (hi - lo)) + lo in float32 (the official de-quantizer)."""
        lo, _, scale = self.quantizer._bounds(np.dtype(np.float32), out.shape[1], bit_depth=1)
        np.clip(x01, 0.0, 1.0, out=out, casting="unsafe")
        np.divide(out, scale, out=out)
        np.add(out, lo, out=out)
        return out


def pad_to_multiple(frame: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Zero-pad a 2-D frame to multiples of `multiple`: floor(pad/2) top/left, rest bottom/right.

    Returns the padded frame and (top, bottom, left, right) for `unpad`.
    """
    h, w = frame.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    return np.pad(frame, ((pads[0], pads[1]), (pads[2], pads[3]))), pads


def unpad(frame: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    h, w = frame.shape[-2:]
    return frame[..., top:h - bottom, left:w - right]
