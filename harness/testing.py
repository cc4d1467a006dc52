"""A public conformance check for codec plugins: call it from your plugin's tests.

    from harness.testing import check_codec
    def test_my_codec_conforms():
        check_codec(my_spec)          # raises AssertionError with the reason

It checks, on small frames in the CTC shapes of each task it is given: the
round trip returns the declared shape and kind; decoding works from the bytes
alone (a fresh codec instance, and optionally a fresh process); the same input
gives the same bytes twice; bits do not grow as the rate points go from the
highest rate to the lowest; a lossless codec reproduces its input exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
import multiprocessing

import numpy as np

from harness.codec import CodecSpec, finish_encode
from harness.ctc import CTC, load_ctc
from harness.jobs import canonical_hash, check_decoded
from harness.processing import Preprocessor
from harness.runner import codec_rate_points

#: Small stand-ins for each task: the CTC's layout with fewer tokens/channels.
SMALL_SHAPES = {"cls": (1, 1, 17, 64), "seg": (2, 1, 10, 64), "dpt": (2, 4, 9, 32),
                "csr": (1, 1, 12, 128), "tti": (1, 16, 16, 16)}


@dataclass(frozen=True)
class ConformanceReport:
    codec: str
    tasks: tuple[str, ...]
    bits: dict[str, list[int]]


def sample_input(ctc: CTC, spec: CodecSpec, task: str, shape: Sequence[int] | None = None,
                 seed: int = 0) -> np.ndarray:
    """A deterministic codec input for `task` (heavy-tailed values, as features are)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape or SMALL_SHAPES[task])
    dtype = np.dtype(ctc.task(task).dtype)
    feature = (rng.standard_t(4, shape) * 2.0).astype(dtype)
    if spec.input_kind == "feature":
        return feature
    pipe = Preprocessor.for_task(ctc, task, spec.family, spec.input_kind, shape, dtype)
    return pipe.forward(feature)


def _decode_fresh(args: tuple) -> str:
    spec, options, bitstream = args
    return canonical_hash(spec.factory(options).decode(bitstream))


def check_codec(spec: CodecSpec, tasks: Sequence[str] = ("cls", "csr", "tti"), options: dict | None = None,
                ctc: CTC | None = None, shapes: dict[str, Sequence[int]] | None = None,
                fresh_process: bool = False) -> ConformanceReport:
    """Run the conformance checks; raise AssertionError naming the first failure."""
    ctc = ctc or load_ctc()
    options = dict(options or {})
    missing = spec.missing()
    assert not missing, f"{spec.name}: cannot run here: {missing}"
    bits: dict[str, list[int]] = {}
    for task in tasks:
        data = sample_input(ctc, spec, task, (shapes or {}).get(task))
        points = codec_rate_points(spec, ctc, task)
        assert points, f"{spec.name}: no rate points for {task}"
        bits[task] = []
        for point in points:
            encoder = spec.factory(options)
            stream = encoder.encode(data.copy(), point, task)
            finish_encode(encoder)
            assert isinstance(stream, bytes), f"{spec.name}: encode must return bytes, got {type(stream).__name__}"
            again = spec.factory(options).encode(data.copy(), point, task)
            assert stream == again, f"{spec.name}: {task} at {point:g}: same input gave different bytes"
            decoded = spec.factory(options).decode(stream)  # a fresh instance: bytes alone
            canonical = check_decoded(decoded, data, spec.input_kind)
            if spec.lossless:
                assert np.array_equal(canonical, data), f"{spec.name}: lossless decode differs at {point:g}"
            if fresh_process:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    digest = pool.submit(_decode_fresh, (spec, options, stream)).result()
                assert digest == canonical_hash(canonical), f"{spec.name}: decode differs in a fresh process"
            bits[task].append(8 * len(stream))
        grows = [(a, b) for a, b in zip(bits[task], bits[task][1:]) if b > a]
        assert not grows, (f"{spec.name}: {task}: bits grow from one rate point to the next lower-rate one "
                           f"({bits[task]} over {list(points)})")
    return ConformanceReport(spec.name, tuple(tasks), bits)
