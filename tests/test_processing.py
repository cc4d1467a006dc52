"""Pre/post-processing against the CTC definitions, with hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from harness.ctc import Truncation
from harness.processing import Preprocessor, Quantizer, pack, packed_shape, pad_to_multiple, unpack, unpad


def test_floor_quantization_hand_worked():
    # [-20, 20] at 10 bit: scale = 1023/40 = 25.575
    q = Quantizer(Truncation((-20.0,), (20.0,)), 10, "floor")
    x = np.array([-25.0, -20.0, -19.99, 0.0, 0.039, 19.99, 20.0, 300.0], np.float32).reshape(1, 1, 1, 8)
    out = np.empty(x.shape, np.uint16)
    q.quantize_into(x, out)
    # floor((x + 20) * 25.575): clip -> 0, 0, floor(0.25575)=0, floor(511.5)=511, floor(512.497)=512,
    # floor(1022.74)=1022, 1023, clip -> 1023
    assert out.ravel().tolist() == [0, 0, 0, 511, 512, 1022, 1023, 1023]
    rec = np.empty(x.shape, np.float32)
    q.dequantize_into(out, rec)
    # x^ = q / scale + lo, no half step: 511 -> 511/25.575 - 20 = -0.01955...
    assert rec.ravel()[3] == pytest.approx(511 / 25.575 - 20, abs=1e-5)
    assert rec.ravel()[0] == pytest.approx(-20.0)
    assert rec.ravel()[6] == pytest.approx(20.0, abs=1e-5)


def test_unbiased_rule_rounds_and_is_not_default(ctc):
    assert ctc.default_quant_rule == "floor"
    x = np.array([0.01, -0.01], np.float32).reshape(1, 1, 1, 2)  # 511.756 and 511.244 before rounding
    out = np.empty(x.shape, np.uint16)
    Quantizer(Truncation((-20.0,), (20.0,)), 10, "unbiased").quantize_into(x, out)
    assert out.ravel().tolist() == [512, 511]
    Quantizer(Truncation((-20.0,), (20.0,)), 10, "floor").quantize_into(x, out)
    assert out.ravel().tolist() == [511, 511]


def test_per_layer_ranges_dpt(ctc):
    trunc = ctc.truncation("dpt", "handcrafted")
    assert trunc.lo == (-1.0, -2.0, -10.0, -20.0)
    q = Quantizer(trunc, 10)
    # value 0.5 in every layer: floor((0.5 - lo) * 1023 / (hi - lo))
    x = np.full((1, 4, 1, 1), 0.5, np.float32)
    out = np.empty(x.shape, np.uint16)
    q.quantize_into(x, out)
    expected = [int(np.floor(np.float32(0.5 - lo) * np.float32(1023 / (2 * -lo)))) for lo in trunc.lo]
    assert out.ravel().tolist() == expected == [767, 639, 537, 524]


def test_tti_arithmetic_is_float16(ctc):
    trunc = ctc.truncation("tti", "handcrafted")
    x = np.array([-5.79, 0.0, 1.2345, 4.46], np.float16).reshape(1, 1, 1, 4)
    out = np.empty(x.shape, np.uint16)
    Quantizer(trunc, 10).quantize_into(x, out)
    lo, scale = np.float16(trunc.lo[0]), np.float16(1023 / (trunc.hi[0] - trunc.lo[0]))
    manual = ((np.clip(x, lo, np.float16(trunc.hi[0])) - lo) * scale).astype(np.uint16)  # all float16
    assert out.ravel().tolist() == manual.ravel().tolist()
    # and it differs from float32 arithmetic on some value, which is why the dtype matters
    x32 = np.linspace(-5.79, 4.46, 2001, dtype=np.float16).reshape(1, 1, 1, -1)
    a, b = np.empty(x32.shape, np.uint16), np.empty(x32.shape, np.uint16)
    Quantizer(trunc, 10).quantize_into(x32, a)
    Quantizer(trunc, 10).quantize_into(x32.astype(np.float32), b)
    assert (a != b).any()


def test_dinov2_packing_hand_worked():
    # (N=2, C=2, H=2, W=3): rows = (n, h), each row = layer 0 vector then layer 1 vector
    f = np.arange(24).reshape(2, 2, 2, 3)
    frame = pack(f, "dinov2")
    assert frame.shape == (4, 6)
    assert frame[0].tolist() == [0, 1, 2, 6, 7, 8]       # n0 h0: c0 w0..2, c1 w0..2
    assert frame[1].tolist() == [3, 4, 5, 9, 10, 11]     # n0 h1
    assert frame[2].tolist() == [12, 13, 14, 18, 19, 20]  # n1 h0
    assert np.array_equal(unpack(frame, f.shape, "dinov2"), f)


def test_llama_packing():
    f = np.arange(12).reshape(1, 1, 3, 4)
    frame = pack(f, "llama3")
    assert frame.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert np.array_equal(unpack(frame, f.shape, "llama3"), f)


def test_sd3_packing_hand_worked():
    # 16 channels of 2x2: channel c at tile row c // 4, tile col c % 4
    f = np.arange(16 * 4).reshape(1, 16, 2, 2)
    frame = pack(f, "sd3")
    assert frame.shape == (8, 8)
    for c in range(16):
        r, col = divmod(c, 4)
        assert np.array_equal(frame[2 * r:2 * r + 2, 2 * col:2 * col + 2], f[0, c])
    assert np.array_equal(unpack(frame, f.shape, "sd3"), f)


@pytest.mark.parametrize("task,shape,frame", [
    ("cls", (1, 1, 257, 1536), (257, 1536)),
    ("seg", (2, 1, 1370, 1536), (2740, 1536)),
    ("seg", (3, 1, 1370, 1536), (4110, 1536)),
    ("dpt", (2, 4, 1611, 1536), (3222, 6144)),
    ("csr", (1, 1, 186, 4096), (186, 4096)),
    ("tti", (1, 16, 128, 128), (512, 512)),
])
def test_frame_sizes_match_the_ctc(ctc, task, shape, frame):
    assert packed_shape(shape, ctc.task(task).packing) == frame


@pytest.mark.parametrize("task", ["cls", "seg", "dpt", "csr", "tti"])
@pytest.mark.parametrize("family,kind", [("handcrafted", "frame10"), ("learned", "frame01")])
def test_pipeline_round_trip_within_half_step(ctc, task, family, kind):
    spec = ctc.task(task)
    shape = {"cls": (1, 1, 9, 16), "seg": (2, 1, 5, 16), "dpt": (2, 4, 5, 8), "csr": (1, 1, 7, 32),
             "tti": (1, 16, 4, 4)}[task]
    rng = np.random.default_rng(1)
    trunc = ctc.truncation(task, family)
    lo = np.array(trunc.lo).reshape(1, -1, 1, 1)
    hi = np.array(trunc.hi).reshape(1, -1, 1, 1)
    x = (rng.uniform(0, 1, shape) * (hi - lo) * 1.2 + lo - 0.1 * (hi - lo)).astype(spec.dtype)
    if task == "tti":
        x = np.clip(x, trunc.lo[0], trunc.hi[0]).astype(np.float16)
    pipe = Preprocessor.for_task(ctc, task, family, kind, shape, spec.dtype)
    frame = pipe.forward(x)
    assert frame.shape == packed_shape(shape, spec.packing)
    assert frame.dtype == (np.uint16 if kind == "frame10" else np.float32)
    rec = pipe.inverse(frame)
    assert rec.shape == x.shape and rec.dtype == x.dtype
    clipped = np.clip(x.astype(np.float64), lo, hi)
    err = clipped - rec.astype(np.float64)
    if kind == "frame10":
        step = (hi - lo) / 1023
        slack = 5e-3 if task == "tti" else 1e-5  # float16 storage rounds the reconstruction
        # floor rule: the reconstruction lies below the value by less than one step
        assert (err >= -slack).all() and (err < step + slack).all()
        assert frame.max() <= 1023
    else:
        assert np.allclose(err, 0, atol=1e-2 if task == "tti" else 1e-5)


def test_padding_split_floor_half_top_left():
    frame = np.ones((257, 100), np.float32)
    padded, pads = pad_to_multiple(frame, 64)
    assert padded.shape == (320, 128)
    assert pads == (31, 32, 14, 14)
    assert padded[:31].sum() == 0 and padded[31:288, 14:114].all()
    assert np.array_equal(unpad(padded, pads), frame)


# ---------------------------------------------------------------- the learned family, bit-exact

def _official_bounds(trunc: Truncation) -> list[tuple[float, float]]:
    """The official scripts' lo/hi: Python floats, one pair per layer when the CTC gives several."""
    return list(zip(trunc.lo, trunc.hi))


def _official_normalize(feat: np.ndarray, trunc: Truncation) -> np.ndarray:
    """FeatureFolder.truncation + uniform_quantization(bit_depth=1), the official way: a float32
    feature and Python-float bounds, so (x - lo) * scale runs in float32 with scale = 1/(hi - lo)
    computed in double and rounded to float32 once."""
    feat = feat.astype(np.float32)
    out = np.zeros_like(feat)
    for layer, (lo, hi) in enumerate(_official_bounds(trunc)):
        part = feat if not trunc.per_layer else feat[:, layer]
        scale = (2**1 - 1) / (hi - lo)
        value = (np.clip(part, lo, hi) - lo) * scale
        assert value.dtype == np.float32  # float32 arithmetic with the scalars rounded to float32
        if trunc.per_layer:
            out[:, layer] = value
        else:
            out = value
    return out


def _official_denormalize(x01: np.ndarray, trunc: Truncation) -> np.ndarray:
    """uniform_dequantization(bit_depth=1) after the decoder's clamp to [0, 1]: x / scale + lo, float32."""
    x01 = np.clip(x01.astype(np.float32), 0.0, 1.0)
    out = np.zeros_like(x01)
    for layer, (lo, hi) in enumerate(_official_bounds(trunc)):
        part = x01 if not trunc.per_layer else x01[:, layer]
        scale = (2**1 - 1) / (hi - lo)
        value = part / scale + lo
        assert value.dtype == np.float32
        if trunc.per_layer:
            out[:, layer] = value
        else:
            out = value
    return out


def _boundary_values(lo: float, hi: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """lo, hi, their float32 neighbours inside and outside, 0, and random values around [lo, hi]."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    edges = [lo32, hi32, np.nextafter(lo32, np.float32(-np.inf)), np.nextafter(lo32, np.float32(np.inf)),
             np.nextafter(hi32, np.float32(-np.inf)), np.nextafter(hi32, np.float32(np.inf)), np.float32(0),
             np.float32(lo - 1), np.float32(hi + 1)]
    spread = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), count - len(edges))
    return np.concatenate([np.array(edges, np.float32), spread.astype(np.float32)])


@pytest.mark.parametrize("task", ["cls", "seg", "dpt", "csr", "tti"])
def test_hyperprior_normalization_is_bit_exact_to_the_official_code(ctc, task):
    spec = ctc.task(task)
    trunc = ctc.truncation(task, "learned")
    shape = {"cls": (1, 1, 64, 32), "seg": (2, 1, 32, 32), "dpt": (2, 4, 16, 32), "csr": (1, 1, 64, 32),
             "tti": (1, 16, 16, 8)}[task]
    rng = np.random.default_rng(7)
    layers = shape[1] if trunc.per_layer else 1
    per_layer = [_boundary_values(lo, hi, int(np.prod(shape)) // layers, rng).reshape(-1)
                 for lo, hi in _official_bounds(trunc)]
    if trunc.per_layer:
        feature = np.stack([v.reshape(shape[0], *shape[2:]) for v in per_layer], axis=1)
    else:
        feature = per_layer[0].reshape(shape)
    feature = feature.astype(spec.dtype)  # tti stores float16; the learned path works in float32
    pipe = Preprocessor.for_task(ctc, task, "learned", "frame01", shape, spec.dtype)
    frame = pipe.forward(feature)
    expected = pack(_official_normalize(feature, trunc), spec.packing)
    assert frame.dtype == np.float32 and np.array_equal(frame.view(np.uint32), expected.view(np.uint32))
    # inverse: decoder outputs at and around 0 and 1 (clamped), and random values
    x01 = np.concatenate([np.array([0, 1, np.nextafter(0, 1), np.nextafter(1, 0), -0.25, 1.25], np.float32),
                          rng.uniform(0, 1, frame.size - 6).astype(np.float32)]).reshape(frame.shape)
    rec = pipe.inverse(x01)
    official = _official_denormalize(unpack(x01, shape, spec.packing), trunc).astype(spec.dtype)
    assert rec.dtype == official.dtype and np.array_equal(rec, official)
