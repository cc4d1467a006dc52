"""Codec plugins for the Dask executor tests (plugin_modules=("plugins_for_tests.dask_plugins",)).

zlibcount: the zlib reference codec, counting how often its factory runs in this process
           (the stand-in for "load a task-head model"): must be once per worker process.
killer:    the zlib codec, except that encoding rate point 4 SIGKILLs its own process,
           deterministically: the job must end as failed, not be retried forever.
"""

from __future__ import annotations

import os
import signal

from harness import CodecSpec, hookimpl
from harness_plugins.zlib_codec import ZlibCodec, make_codec

FACTORY_CALLS = 0


def counting_factory(options):
    global FACTORY_CALLS
    FACTORY_CALLS += 1
    return make_codec(options)


class Killer(ZlibCodec):
    def encode(self, frame, rate_point, task):
        if int(rate_point) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(frame, rate_point, task)


def _spec(name, factory):
    return CodecSpec(name=name, version="1.0", family="handcrafted", input_kind="frame10", factory=factory,
                     rate_parameter="shift", rate_points=(0, 1, 2, 3, 4), options={"level": "9"})


@hookimpl
def harness_codecs():
    return [_spec("zlibcount", counting_factory), _spec("killer", lambda options: Killer(int(options.get("level", 1))))]


def factory_calls() -> int:
    """client.run target: how many codecs this worker process has built."""
    return FACTORY_CALLS


def executing(dask_worker) -> tuple[int, list[str]]:
    """client.run target: this worker's pid and the keys of the tasks it is executing now."""
    return os.getpid(), [ts.key for ts in dask_worker.state.executing]
