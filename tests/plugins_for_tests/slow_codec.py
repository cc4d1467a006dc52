"""`slowzlib`: the zlib codec, 0.3 s per encoding, so that a test can interrupt a run halfway
however loaded the machine is (FCM_HARNESS_PLUGINS=plugins_for_tests.slow_codec)."""

from __future__ import annotations

import time

from harness import CodecSpec, hookimpl
from harness_plugins.zlib_codec import ZlibCodec


class SlowZlib(ZlibCodec):
    def encode(self, frame, rate_point, task):
        time.sleep(0.3)
        return super().encode(frame, rate_point, task)


def make_codec(options):
    return SlowZlib(9)


@hookimpl
def harness_codecs():
    return [CodecSpec(name="slowzlib", version="1.0", family="handcrafted", input_kind="frame10", factory=make_codec,
                      rate_parameter="shift", rate_points=(0, 1, 2, 3, 4))]
