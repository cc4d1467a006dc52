"""The reference codec plugin `zlib`: the smallest complete codec, and the template to copy.

It codes the packed 10-bit frame (input kind "frame10", the VTM family's
pre-processing) with zlib. Rate point k drops the k least significant bits
before zlib (k = 0 is lossless) and the decoder puts the mid-point back, so the
plugin has a real rate-distortion curve to test reports with.

Bitstream: b"ZL" | version (1 byte) | k (1 byte) | height (uint32 LE) |
width (uint32 LE) | zlib stream of the uint16 LE samples >> k. Everything the
decoder needs is in these bytes, and the harness counts all of them.

Bitstreams may come from others, so the decoder is bounded: it refuses a header
declaring more than MAX_FRAME_SAMPLES samples or more than deflate can expand
the payload to, and inflates at most the declared size (a 1 MB stream of zeros
would otherwise inflate to a gigabyte).
"""

from __future__ import annotations

from collections.abc import Mapping
import struct
import zlib

import numpy as np

from harness import MAX_FRAME_SAMPLES, CodecError, CodecSpec, Option, hookimpl

VERSION = "1.0"
HEADER = struct.Struct("<2sBBII")
MAGIC, FORMAT = b"ZL", 1
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand a stream more than ~1032:1


class ZlibCodec:
    def __init__(self, level: int = 9) -> None:
        self.level = level

    def encode(self, frame: np.ndarray, rate_point: float, task: str) -> bytes:
        shift = int(rate_point)
        if not 0 <= shift <= 9:
            raise CodecError(f"zlib: rate point (dropped bits) must be 0..9, got {rate_point}")
        samples = (frame.astype("<u2") >> shift).astype("<u2")
        header = HEADER.pack(MAGIC, FORMAT, shift, *frame.shape)
        return header + zlib.compress(samples.tobytes(), self.level)

    def decode(self, bitstream: bytes) -> np.ndarray:
        if len(bitstream) < HEADER.size:
            raise CodecError(f"zlib: bitstream of {len(bitstream)} bytes is shorter than its header")
        magic, fmt, shift, height, width = HEADER.unpack_from(bitstream)
        if magic != MAGIC or fmt != FORMAT:
            raise CodecError("zlib: not a zlib-plugin bitstream")
        if shift > 9:
            raise CodecError(f"zlib: header says {shift} dropped bits; at most 9")
        payload = bitstream[HEADER.size:]
        size = 2 * height * width  # bytes of uint16 samples the header declares
        if not 0 < height * width <= MAX_FRAME_SAMPLES or size > DEFLATE_MAX_RATIO * len(payload):
            raise CodecError(f"zlib: header declares a {height}x{width} frame, impossible for a "
                             f"{len(payload)}-byte payload (at most {MAX_FRAME_SAMPLES} samples, "
                             f"{DEFLATE_MAX_RATIO}:1 expansion)")
        raw = inflate_exactly(payload, size)
        samples = np.frombuffer(raw, dtype="<u2").reshape(height, width).astype(np.uint16)
        if shift == 0:
            return samples
        mid = 1 << (shift - 1)  # reconstruct at the middle of each dropped-bit interval
        return np.minimum((samples << shift) + mid, 1023).astype(np.uint16)


def inflate_exactly(payload: bytes, size: int) -> bytes:
    """Inflate a zlib stream that must hold exactly `size` bytes, never producing more."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, size)
        # output full: the stream may still hold its end marker and checksum, or more data
        extra = inflater.decompress(inflater.unconsumed_tail, 1) if inflater.unconsumed_tail else b""
    except zlib.error as exc:
        raise CodecError(f"zlib: corrupt bitstream ({exc})") from None
    if extra:
        raise CodecError(f"zlib: payload inflates to more than the {size} bytes its header declares")
    if not inflater.eof:
        raise CodecError(f"zlib: truncated stream ({len(raw)} of the {size} bytes its header declares)")
    if len(raw) != size:
        raise CodecError(f"zlib: payload has {len(raw)} bytes, header declares {size}")
    if inflater.unused_data:
        raise CodecError(f"zlib: {len(inflater.unused_data)} bytes after the end of the zlib stream")
    return raw


def make_codec(options: Mapping[str, str]) -> ZlibCodec:
    # the harness has checked the options against OPTIONS (CodecSpec.open): names, kinds, bounds
    return ZlibCodec(level=int(options.get("level", OPTIONS["level"].default)))


OPTIONS = {"level": Option("9", "int", minimum=0, maximum=9, help="zlib compression level")}


@hookimpl
def harness_codecs() -> list[CodecSpec]:
    return [CodecSpec(
        name="zlib", version=VERSION, family="handcrafted", input_kind="frame10", factory=make_codec,
        rate_parameter="shift", rate_points=(0, 1, 2, 3, 4), options=OPTIONS,
        description="reference plugin: zlib on the 10-bit frame, k LSBs dropped (k = 0 lossless)",
    )]
