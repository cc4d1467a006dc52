"""A codec whose decoder misbehaves as its bitstream's first byte says (plugin_modules=("plugins_for_tests.hostile",)).

For the decode pool's tests, which write such bitstreams themselves (the encoder always writes
b"o", a fine stream, so a run with it works):

    o  fine: 4-byte height, then little-endian uint16 samples
    m  allocates twice the process's address-space cap (RLIMIT_AS), or raises if there is none
    s  sleeps for an hour
    k  SIGKILLs its own process
    x  os._exit(3)
"""

from __future__ import annotations

import os
import resource
import signal
import time

import numpy as np

from harness import CodecSpec, hookimpl


class Hostile:
    def encode(self, data, rate_point, task):
        return b"o" + data.shape[0].to_bytes(4, "little") + data.astype("<u2").tobytes()

    def decode(self, bitstream):
        mode, body = bitstream[:1], bitstream[1:]
        if mode == b"m":
            soft, _ = resource.getrlimit(resource.RLIMIT_AS)
            if soft == resource.RLIM_INFINITY:
                raise RuntimeError("no address-space cap to exceed")
            return np.ones(2 * soft, np.uint8)
        if mode == b"s":
            time.sleep(3600)
        if mode == b"k":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == b"x":
            os._exit(3)
        height = int.from_bytes(body[:4], "little")
        return np.frombuffer(body[4:], "<u2").reshape(height, -1)


@hookimpl
def harness_codecs():
    return [CodecSpec(name="hostile", version="0", family="handcrafted", input_kind="frame10",
                      factory=lambda o: Hostile(), rate_points=(1,))]
