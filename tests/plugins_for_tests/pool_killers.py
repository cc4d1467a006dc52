"""Codecs that kill their own worker process (plugin_modules=("plugins_for_tests.pool_killers",)).

killonce: the zlib codec, except that the first encoding of rate point 2 SIGKILLs its process
          (it leaves the file named by option `marker` so the redo goes through): the job is redone.
killer:   the zlib codec, except that encoding rate point 4 always SIGKILLs its process: bounded
          retries, then a failed row.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal

from harness import CodecSpec, hookimpl
from harness_plugins.zlib_codec import ZlibCodec


class KillOnce(ZlibCodec):
    def __init__(self, marker: str) -> None:
        super().__init__(1)
        self.marker = Path(marker)

    def encode(self, frame, rate_point, task):
        if int(rate_point) == 2 and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(frame, rate_point, task)


class Killer(ZlibCodec):
    def encode(self, frame, rate_point, task):
        if int(rate_point) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(frame, rate_point, task)


def _spec(name, factory, options):
    return CodecSpec(name=name, version="1.0", family="handcrafted", input_kind="frame10", factory=factory,
                     rate_parameter="shift", rate_points=(0, 1, 2, 3, 4), options=options)


@hookimpl
def harness_codecs():
    return [_spec("killonce", lambda options: KillOnce(options["marker"]), {"marker": ""}),
            _spec("killer", lambda options: Killer(1), {})]
