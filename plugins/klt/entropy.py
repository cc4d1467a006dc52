"""Entropy coding of the quantized coefficients: integer tables and constriction's ANS coder.

Every coded component (a column of integers, one per token) uses one of 63 discrete Laplace
(two-sided geometric) distributions; the encoder picks the one that codes the column in the
fewest bits and sends its 6-bit scale index. A table is made from its index with integer
arithmetic only (an integer cube root, an integer square root, shifts), so encoder and decoder
hold the same frequencies on any machine, and constriction receives them as exact multiples of
2^-24, its model precision: no float probability is ever recomputed on decode.

A table covers [-L, L]. The edge symbols ±L stand for |q| >= L: the excess |q| - L follows as an
Exp-Golomb code (a 6-bit length, then the bits in uniform chunks of at most 16), so any integer
can be coded, at a cost that grows with its logarithm.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from harness import CodecError

PRECISION = 24                 # constriction's model precision (AnsCoder: 32-bit words, 24-bit models)
TOTAL = 1 << PRECISION
FIX = 32                       # fixed-point bits of the geometric ratio θ
ONE = 1 << FIX
SCALES = 64                    # index 0: the component is not coded (all zero); 1..63: a table
SCALE_OFFSET = 22              # index i: mean |q| = 2^((i - 22) / 3), from 0.0077 (i = 1) to 13004 (i = 63)
MAX_EDGE = 1 << 14             # largest L of a table
TAIL_BITS = 27                 # a table ends where θ^L < 2^-27 (below the 2^-24 resolution)
PREFIX = 64                    # Exp-Golomb length alphabet
CHUNK = 16                     # Exp-Golomb payload bits per uniform symbol


def _icbrt(n: int) -> int:
    """floor(n ** (1/3)) for a non-negative integer, exactly."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // 3)  # >= the root
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


def theta_fixed(index: int) -> int:
    """θ · 2^32 of table `index`: the ratio whose two-sided geometric has mean |q| = 2^((index - 22) / 3)."""
    m = _icbrt(1 << (index - SCALE_OFFSET + 3 * FIX))  # mean |q| · 2^FIX; E|q| = 2θ / (1 - θ²)
    return ((math.isqrt(ONE * ONE + m * m) - ONE) << FIX) // m


@functools.lru_cache(maxsize=None)
def table(index: int) -> tuple[int, np.ndarray]:
    """(L, frequencies of -L..L summing to 2^24, each >= 1) of a scale index, in integers only."""
    if not 1 <= index < SCALES:
        raise CodecError(f"klt: scale index {index} out of range 1..{SCALES - 1}")
    theta = theta_fixed(index)
    weights = [1 << 62]
    floor = 1 << (62 - TAIL_BITS)
    while len(weights) < MAX_EDGE and weights[-1] > floor:
        weights.append(weights[-1] * theta >> FIX)
    edge = len(weights)
    tail = (weights[-1] * theta >> FIX) * ONE // (ONE - theta)  # mass of |q| >= L, one side
    side = weights[1:] + [tail]
    full = side[::-1] + [weights[0]] + side
    total, n = sum(full), len(full)
    freqs = [w * (TOTAL - n) // total + 1 for w in full]
    freqs[edge] += TOTAL - sum(freqs)  # the rounding remainder (< n) goes to zero
    return edge, np.asarray(freqs, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _categorical(index: int):
    import constriction

    _, freqs = table(index)
    return constriction.stream.model.Categorical(freqs / float(TOTAL), perfect=False)


@functools.lru_cache(maxsize=None)
def _uniform(size: int):
    import constriction

    return constriction.stream.model.Uniform(size)


@functools.lru_cache(maxsize=None)
def _bits(index: int) -> np.ndarray:
    """Bits of a symbol of magnitude v = 0..L under table `index` (v = L: the edge symbol)."""
    edge, freqs = table(index)
    return PRECISION - np.log2(freqs[edge:].astype(np.float64))


class _Column:
    """What the index search needs of a column: its magnitudes, and their histogram."""

    def __init__(self, q: np.ndarray) -> None:
        self.magnitudes = np.abs(q)
        self.histogram = np.bincount(np.minimum(self.magnitudes, MAX_EDGE))

    def bits(self, index: int) -> float:
        """Bits to code the column with table `index`, Exp-Golomb escapes included."""
        edge, bits = table(index)[0], _bits(index)
        n = min(edge, len(self.histogram))
        escaped = self.magnitudes[self.magnitudes >= edge] if len(self.histogram) > edge else self.magnitudes[:0]
        excess = escaped - edge
        escapes = len(excess) * (bits[edge] + math.log2(PREFIX)) + float(np.sum(np.floor(np.log2(excess + 1.0))))
        return float(self.histogram[:n] @ bits[:n]) + escapes


def code_length(q: np.ndarray, index: int) -> float:
    """Bits to code the integers `q` with table `index` (escapes included)."""
    return _Column(q).bits(index)


def choose_index(q: np.ndarray) -> tuple[int, float]:
    """(the scale index that codes `q` in the fewest bits, those bits); (0, 0) when all are zero.

    Starts at the index of the column's mean magnitude and walks to lower cost (the cost is
    unimodal in the index for Laplace-like data; the choice only affects efficiency, not decoding).
    """
    column = _Column(q)
    mean = float(np.mean(column.magnitudes))
    if mean == 0:
        return 0, 0.0
    best = int(np.clip(round(3 * math.log2(mean) + SCALE_OFFSET), 1, SCALES - 1))
    cost = {best: column.bits(best)}
    for direction in (-1, 1):
        index = best + direction
        while 1 <= index < SCALES:
            cost[index] = column.bits(index)
            if cost[index] >= cost[best]:
                break
            best, index = index, index + direction
    return best, cost[best]


def _exp_golomb(excess: int) -> list[tuple[int, int]]:
    """(value, alphabet size) symbols of the Exp-Golomb code of a non-negative integer."""
    u = excess + 1
    bits = u.bit_length() - 1
    if bits >= PREFIX:
        raise CodecError(f"klt: coefficient excess {excess} too large to code")
    out = [(bits, PREFIX)]
    while bits > 0:
        size = min(CHUNK, bits)
        bits -= size
        out.append(((u >> bits) & ((1 << size) - 1), 1 << size))
    return out


class Encoder:
    """Collects symbols in decoding order; `finish` codes them (ANS is last in, first out)."""

    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, object]] = []

    def uniform(self, values: np.ndarray, size: int) -> None:
        if len(values):
            self._ops.append((np.asarray(values, dtype=np.int32), _uniform(size)))

    def column(self, q: np.ndarray, index: int) -> None:
        """The integers `q` with table `index`, then the Exp-Golomb excess of the edge symbols."""
        edge, _ = table(index)
        self._ops.append(((np.clip(q, -edge, edge) + edge).astype(np.int32), _categorical(index)))
        excess = [int(v) - edge for v in np.abs(q[np.abs(q) >= edge])]
        codes = [_exp_golomb(e) for e in excess]
        self.uniform(np.array([c[0][0] for c in codes], dtype=np.int32), PREFIX)
        for code in codes:
            for value, size in code[1:]:
                self.uniform(np.array([value], dtype=np.int32), size)

    def finish(self) -> bytes:
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        for symbols, model in reversed(self._ops):
            coder.encode_reverse(symbols, model)
        return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


class Decoder:
    """Reads back what an `Encoder` wrote, in the same order; CodecError on corrupt data."""

    def __init__(self, payload: bytes) -> None:
        import constriction

        if len(payload) % 4:
            raise CodecError(f"klt: entropy-coded payload of {len(payload)} bytes is not whole 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.stack.AnsCoder(words)

    def _decode(self, model, count: int) -> np.ndarray:
        try:
            return np.asarray(self._coder.decode(model, count), dtype=np.int64)
        except Exception as exc:  # constriction raises its own types on exhausted or invalid data
            raise CodecError(f"klt: corrupt entropy-coded payload ({exc})") from None

    def uniform(self, count: int, size: int) -> np.ndarray:
        return self._decode(_uniform(size), count) if count else np.zeros(0, dtype=np.int64)

    def column(self, count: int, index: int) -> np.ndarray:
        edge, _ = table(index)
        q = self._decode(_categorical(index), count) - edge
        where = np.flatnonzero(np.abs(q) == edge)
        for at, bits in zip(where, self.uniform(len(where), PREFIX)):
            u, left = 1, int(bits)
            while left > 0:
                size = min(CHUNK, left)
                left -= size
                u = (u << size) | int(self.uniform(1, 1 << size)[0])
            q[at] += int(np.sign(q[at])) * (u - 1)
        return q

    def check_consumed(self) -> None:
        if not self._coder.is_empty():
            raise CodecError("klt: entropy-coded payload has data left after the last coefficient")

