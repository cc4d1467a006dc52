"""Codecs that misbehave in the ways a third-party codec can: the runner must survive them."""

from __future__ import annotations

import numpy as np

from harness import CodecSpec, hookimpl


class Garbage:
    """Encodes fine, decodes to the wrong shape."""

    def encode(self, data, rate_point, task):
        return b"x" * 10

    def decode(self, bitstream):
        return np.zeros((3, 3), np.uint16)


class Crashes:
    def encode(self, data, rate_point, task):
        raise RuntimeError("encoder exploded")

    def decode(self, bitstream):
        raise AssertionError("never reached")


class NaNFloat:
    """A float-feature codec that returns NaN."""

    def encode(self, data, rate_point, task):
        return data.shape[2].to_bytes(4, "little")

    def decode(self, bitstream):
        t = int.from_bytes(bitstream, "little")
        return np.full((1, 1, t, 4096), np.nan, np.float32)


class SelfCheckFails:
    """Encodes and decodes fine but its own check of the encoding (after_encode) fails."""

    def encode(self, data, rate_point, task):
        return data.shape[0].to_bytes(4, "little") + data.astype("<u2").tobytes()

    def decode(self, bitstream):
        height = int.from_bytes(bitstream[:4], "little")
        return np.frombuffer(bitstream[4:], "<u2").reshape(height, -1)

    def after_encode(self):
        from harness import CodecError

        raise CodecError("the decoder disagrees with the encoder")


@hookimpl
def harness_codecs():
    return [
        CodecSpec(name="garbage", version="0", family="handcrafted", input_kind="frame10", factory=lambda o: Garbage(),
                  rate_points=(1,)),
        CodecSpec(name="crashes", version="0", family="handcrafted", input_kind="frame10", factory=lambda o: Crashes(),
                  rate_points=(1,)),
        CodecSpec(name="nanfloat", version="0", family=None, input_kind="feature", factory=lambda o: NaNFloat(),
                  rate_points=(1,)),
        _int32_spec(),
        CodecSpec(name="selfcheck", version="0", family="handcrafted", input_kind="frame10",
                  factory=lambda o: SelfCheckFails(), rate_points=(1,)),
    ]


class Int32Frames:
    """A fine codec whose decoder returns int32 samples (allowed: the harness canonicalises to uint16)."""

    def encode(self, data, rate_point, task):
        return data.shape[0].to_bytes(4, "little") + data.astype("<u2").tobytes()

    def decode(self, bitstream):
        height = int.from_bytes(bitstream[:4], "little")
        return np.frombuffer(bitstream[4:], "<u2").reshape(height, -1).astype(np.int32)


def _int32_spec():
    return CodecSpec(name="int32frames", version="0", family="handcrafted", input_kind="frame10",
                     factory=lambda o: Int32Frames(), rate_points=(1,))
