"""The codec itself: replace this module by yours.

Input: the learned family's frame, float32 in [0, 1] of shape (height, width); the harness has
already truncated, normalized and packed the feature under the CTC. Rate point L quantizes each
sample to L levels; lzma codes the level indices. Everything the decoder needs is in the bytes:

    b"TQ" | format (1 byte) | levels (uint16 LE) | height (uint32 LE) | width (uint32 LE) | lzma

Bitstreams may come from others, so the decoder refuses headers it cannot honour and never
inflates more than the header declares.
"""

from __future__ import annotations

from collections.abc import Mapping
import lzma
import struct

import numpy as np

from harness import MAX_FRAME_SAMPLES, CodecError

HEADER = struct.Struct("<2sBHII")
MAGIC, FORMAT = b"TQ", 1
MAX_LEVELS = 4096


class LevelsCodec:
    def __init__(self, preset: int = 6) -> None:
        self.preset = preset

    def encode(self, frame: np.ndarray, rate_point: float, task: str) -> bytes:
        levels = int(rate_point)
        if not 2 <= levels <= MAX_LEVELS:
            raise CodecError(f"template: rate point (levels) must be 2..{MAX_LEVELS}, got {rate_point}")
        index = np.rint(np.clip(frame, 0.0, 1.0) * (levels - 1)).astype("<u2")
        header = HEADER.pack(MAGIC, FORMAT, levels, *frame.shape)
        return header + lzma.compress(index.tobytes(), preset=self.preset)

    def decode(self, bitstream: bytes) -> np.ndarray:
        if len(bitstream) < HEADER.size:
            raise CodecError(f"template: bitstream of {len(bitstream)} bytes is shorter than its header")
        magic, fmt, levels, height, width = HEADER.unpack_from(bitstream)
        if magic != MAGIC or fmt != FORMAT:
            raise CodecError("template: not a template-codec bitstream")
        if not 2 <= levels <= MAX_LEVELS or not 0 < height * width <= MAX_FRAME_SAMPLES:
            raise CodecError(f"template: header declares {levels} levels and a {height}x{width} frame")
        size = 2 * height * width
        inflater = lzma.LZMADecompressor()
        try:
            raw = inflater.decompress(bitstream[HEADER.size:], max_length=size)
        except lzma.LZMAError as exc:
            raise CodecError(f"template: corrupt bitstream ({exc})") from None
        if len(raw) != size or not inflater.eof:
            raise CodecError(f"template: payload does not hold exactly the {size} bytes its header declares")
        index = np.frombuffer(raw, dtype="<u2").reshape(height, width)
        if int(index.max(initial=0)) >= levels:
            raise CodecError(f"template: a level index is >= the {levels} levels the header declares")
        return (index.astype(np.float32) / np.float32(levels - 1)).astype(np.float32)


def make_codec(options: Mapping[str, str]) -> LevelsCodec:
    """The factory the harness calls with the run's -o KEY=VALUE options, after checking them
    against the spec's declaration (plugin.py): only the declared names, of the declared kinds."""
    return LevelsCodec(int(options.get("preset", 6)))
