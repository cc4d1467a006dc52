"""encode/decode of the klt codec: KLT across channels, uniform scalar quantization, ANS.

Bitstream, format 1 (integers little endian; varint = unsigned LEB128):

    field                         size
    magic b"KT"                   2
    format version (1)            1
    n = length of the task name   1
    task name, UTF-8              n      selects the model folder <models>/<task>/
    model fingerprint (CRC-32)    4      the decoder refuses another model
    dtype (0 float32, 1 float16)  1      of the feature, given back by decode
    step Δ, float32               4      the rate point
    shift F, int8                 1      fixed point of the exact synthesis (below)
    shape N, C, H, W              4 varints
    K_g for each group g          varint each: components coded (the rest are zero)
    payload                       32-bit words of constriction's ANS coder

The payload holds, group by group, the K_g scale indices (6-bit uniform symbols; 0 = the
component is all zero), one bit per coded component (1 = its column is coded as differences
along the token axis) and then each coded component's column of integers, one per token
(entropy.py). Everything the decoder needs is in these bytes or in the model files.

Exact synthesis: the decoder computes x = mean + Σ_k q_k · W_k · 2^-F with integer
W_k = rint(Δ · basis_k · 2^F). The encoder picks F so that every partial sum of Σ q_k W_k is an
integer below 2^52: float64 arithmetic is then exact in any order, so the reconstruction is bit
for bit the same with any BLAS, thread count or machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import struct

import numpy as np

from harness import CodecError
from harness_plugins.klt import entropy
from harness_plugins.klt.model import KltModel, from_tokens, groups_of, to_tokens

MAGIC, FORMAT = b"KT", 1
DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_PREFIX = struct.Struct("<2sBB")     # magic, format, task-name length
_BODY = struct.Struct("<IBfb")       # fingerprint, dtype code, step, shift
EXACT_BITS = 52                      # |partial sums| of the synthesis stay below 2^52


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise CodecError("klt: bitstream ends inside its header")
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            return value, offset


@dataclass(frozen=True)
class Header:
    task: str
    fingerprint: int
    dtype: np.dtype
    step: float            # exactly the float32 value
    shift: int
    shape: tuple[int, int, int, int]
    coded: tuple[int, ...]  # K_g per group

    def pack(self) -> bytes:
        task = self.task.encode("utf-8")
        if len(task) > 255:
            raise CodecError(f"klt: task name longer than 255 bytes: {self.task!r}")
        return (_PREFIX.pack(MAGIC, FORMAT, len(task)) + task
                + _BODY.pack(self.fingerprint, DTYPES.index(self.dtype), self.step, self.shift)
                + b"".join(_varint(v) for v in (*self.shape, *self.coded)))

    @classmethod
    def unpack(cls, data: bytes, groups_for: Callable[[str, tuple[int, ...]], int]) -> tuple[Header, int]:
        """The header and the payload's offset; `groups_for(task, shape)` says how many K_g follow."""
        if len(data) < _PREFIX.size:
            raise CodecError(f"klt: bitstream of {len(data)} bytes is shorter than its header")
        magic, fmt, n = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise CodecError("klt: not a klt-plugin bitstream")
        if fmt != FORMAT:
            raise CodecError(f"klt: bitstream format {fmt}, this decoder reads {FORMAT}")
        offset = _PREFIX.size + n + _BODY.size
        if len(data) < offset:
            raise CodecError(f"klt: bitstream of {len(data)} bytes is shorter than its header")
        task = data[_PREFIX.size:_PREFIX.size + n].decode("utf-8", errors="replace")
        fingerprint, code, step, shift = _BODY.unpack_from(data, _PREFIX.size + n)
        if code >= len(DTYPES) or not (math.isfinite(step) and step > 0):
            raise CodecError(f"klt: corrupt header (dtype code {code}, step {step})")
        shape = []
        for _ in range(4):
            value, offset = _read_varint(data, offset)
            shape.append(value)
        if min(shape) < 1:
            raise CodecError(f"klt: corrupt header (shape {tuple(shape)})")
        coded = []
        for _ in range(groups_for(task, tuple(shape))):
            value, offset = _read_varint(data, offset)
            coded.append(value)
        return cls(task, fingerprint, DTYPES[code], step, shift, tuple(shape), tuple(coded)), offset


def exact_shift(q: np.ndarray, scaled_basis: np.ndarray) -> int:
    """The largest F (<= 60) keeping every partial sum of q @ rint(scaled_basis · 2^F) below 2^52."""
    peak = np.abs(q).max(axis=0).astype(np.float64)           # per component
    bound = float((peak @ np.abs(scaled_basis)).max()) + float(peak.sum())  # + rounding of W
    if bound == 0:
        return 0
    shift = math.floor(EXACT_BITS - 1 - math.log2(bound))
    if shift < -60:
        raise CodecError("klt: coefficients too large for the exact synthesis")
    return min(shift, 60)


def synthesize(q: np.ndarray, basis: np.ndarray, mean: np.ndarray, step: float, shift: int) -> np.ndarray:
    """mean + q @ (Δ · basis) in exact fixed point: the same float64 result on any machine."""
    scale = 2.0 ** shift
    weights = np.rint(np.float64(step) * basis.astype(np.float64) * scale)
    peak = np.abs(q).max(axis=0) if q.size else np.zeros(0)
    if q.size and float((peak @ np.abs(weights)).max()) >= 2.0 ** (EXACT_BITS + 1):
        raise CodecError("klt: corrupt bitstream (coefficients exceed the exact synthesis range)")
    return mean + (q.astype(np.float64) @ weights) / scale


def plan_column(q: np.ndarray) -> tuple[int, bool, np.ndarray]:
    """(scale index, differenced?, values to code) of one component's column of integers.

    Neighbouring tokens (patches of a picture, words of a text) often have similar coefficients:
    coding the differences along the token axis can take fewer bits. It is lossless on the
    integers, so the choice changes the rate, never the reconstruction.
    """
    index, bits = entropy.choose_index(q)
    if not index:
        return 0, False, q
    diff = np.diff(q, prepend=0)
    diff_index, diff_bits = entropy.choose_index(diff)
    if diff_bits < bits:
        return diff_index, True, diff
    return index, False, q


class KltCodec:
    """encode(feature, Δ, task) -> bytes; decode(bytes) -> feature. Models loaded once per task."""

    def __init__(self, load: Callable[[str], KltModel]) -> None:
        self._load = load
        self._models: dict[str, KltModel] = {}
        self._fingerprints: dict[str, int] = {}
        self._last: tuple[bytes, list[np.ndarray]] | None = None

    def model(self, task: str) -> tuple[KltModel, int]:
        if task not in self._models:
            model = self._load(task)
            self._models[task], self._fingerprints[task] = model, model.fingerprint()
        return self._models[task], self._fingerprints[task]

    def encode(self, data: np.ndarray, rate_point: float, task: str) -> bytes:
        step = float(np.float32(rate_point))
        if not (math.isfinite(step) and step > 0):
            raise CodecError(f"klt: rate point (quantization step) must be a positive number, got {rate_point}")
        if data.dtype not in DTYPES:
            raise CodecError(f"klt: expects a float32 or float16 feature, got {data.dtype}")
        model, fingerprint = self.model(task)
        model.check_shape(data.shape, task)
        tokens = to_tokens(data, model.channel_axis)
        columns, shift = [], 60
        for g in range(model.groups):
            basis = model.basis[g].astype(np.float64)
            y = (tokens[g].astype(np.float64) - model.mean[g]) @ basis.T
            q = np.rint(y / step).astype(np.int64)
            nonzero = np.flatnonzero(q.any(axis=0))
            q = q[:, :nonzero[-1] + 1] if nonzero.size else q[:, :0]
            columns.append(q)
            if q.size:
                shift = min(shift, exact_shift(q, step * model.synthesis_rows[g, :q.shape[1]].astype(np.float64)))
        header = Header(task, fingerprint, data.dtype, step, shift, tuple(data.shape),
                        tuple(q.shape[1] for q in columns))
        coder = entropy.Encoder()
        for q in columns:
            plans = [plan_column(column) for column in np.ascontiguousarray(q.T)]
            coder.uniform(np.array([index for index, _, _ in plans], dtype=np.int32), entropy.SCALES)
            coder.uniform(np.array([int(delta) for index, delta, _ in plans if index], dtype=np.int32), 2)
            for index, _, values in plans:
                if index:
                    coder.column(values, index)
        stream = header.pack() + coder.finish()
        self._last = (stream, columns)
        return stream

    def after_encode(self) -> None:
        """The entropy decoder must give back exactly the integers the encoder quantized."""
        if self._last is None:
            return
        stream, columns = self._last
        self._last = None
        _, _, decoded = self._read(stream)
        if len(decoded) != len(columns) or any(not np.array_equal(a, b) for a, b in zip(decoded, columns)):
            raise CodecError("klt: the entropy decoder does not return the encoded coefficients")

    def _read(self, stream: bytes) -> tuple[Header, KltModel, list[np.ndarray]]:
        """Header, model and the quantized coefficients (tokens x K_g per group) of a bitstream."""
        header, offset = Header.unpack(stream, lambda task, shape: groups_of(shape, self.model(task)[0].channel_axis))
        model, fingerprint = self.model(header.task)
        if fingerprint != header.fingerprint:
            raise CodecError(f"klt: the model for task '{header.task}' is not the one that encoded this bitstream "
                             f"(fingerprint {fingerprint:08x} != {header.fingerprint:08x})")
        model.check_shape(header.shape, header.task)
        if any(k > model.channels for k in header.coded):
            raise CodecError(f"klt: corrupt header ({max(header.coded)} components of {model.channels})")
        count = math.prod(header.shape) // (model.groups * model.channels)
        reader = entropy.Decoder(stream[offset:])
        columns = []
        for k_coded in header.coded:
            indices = reader.uniform(k_coded, entropy.SCALES)
            deltas = iter(reader.uniform(int(np.count_nonzero(indices)), 2))
            q = np.zeros((count, k_coded), dtype=np.int64)
            for k, index in enumerate(indices):
                if index:
                    values = reader.column(count, int(index))
                    q[:, k] = np.cumsum(values) if next(deltas) else values
            columns.append(q)
        reader.check_consumed()
        return header, model, columns

    def decode(self, bitstream: bytes) -> np.ndarray:
        header, model, columns = self._read(bytes(bitstream))
        rows = model.synthesis_rows
        tokens = np.stack([synthesize(q, rows[g, :q.shape[1]], model.mean[g], header.step, header.shift)
                           for g, q in enumerate(columns)])
        return from_tokens(tokens, header.shape, model.channel_axis).astype(header.dtype)
