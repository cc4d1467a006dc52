"""A public conformance check for codec plugins: call it from your plugin's tests.

    from harness.testing import check_codec
    def test_my_codec_conforms():
        check_codec(my_spec)          # raises AssertionError with the reason

It checks, on small frames in the CTC shapes of each task it is given: the
round trip returns the declared shape and kind; decoding works from the bytes
alone (a fresh codec instance, and optionally a fresh process); the same input
gives the same bytes twice; bits do not grow as the rate points go from the
highest rate to the lowest; a lossless codec reproduces its input exactly.

Bitstreams come from others, so decoders must be bounded. check_codec decodes
hostile streams and measures what the decoder allocates (tracemalloc: Python
and NumPy memory): the codec's own stream with 0xFF written over each 4-byte
window of its first 16 bytes (a size field there then claims a huge output),
and any `hostile` streams you give, which must be refused (raise). Give it
what your format can express, e.g. your header over `deflate_bomb(...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
import multiprocessing
import struct
import tracemalloc
import zlib

import numpy as np

from harness.codec import CodecSpec, finish_encode
from harness.ctc import CTC, load_ctc
from harness.jobs import canonical_hash, check_decoded
from harness.processing import Preprocessor
from harness.runner import codec_rate_points

#: What decoding a hostile bitstream may allocate; legitimate decodes here are of small frames.
HOSTILE_MEMORY_LIMIT = 64 << 20
#: Bytes of a stream's start overwritten by the generic hostile variants.
HEADER_PROBE = 16

#: Small stand-ins for each task: the CTC's layout with fewer tokens/channels.
SMALL_SHAPES = {"cls": (1, 1, 17, 64), "seg": (2, 1, 10, 64), "dpt": (2, 4, 9, 32),
                "csr": (1, 1, 12, 128), "tti": (1, 16, 16, 16)}
#: ... and for a task of another CTC (the mini one's sal and lm), by its packing.
SMALL_BY_PACKING = {"dinov2": (1, 1, 17, 64), "llama3": (1, 1, 12, 128), "sd3": (1, 16, 16, 16)}


def small_shape(ctc: CTC, task: str) -> tuple[int, ...]:
    return SMALL_SHAPES.get(task) or SMALL_BY_PACKING[ctc.task(task).packing]


@dataclass(frozen=True)
class ConformanceReport:
    codec: str
    tasks: tuple[str, ...]
    bits: dict[str, list[int]]


def sample_input(ctc: CTC, spec: CodecSpec, task: str, shape: Sequence[int] | None = None,
                 seed: int = 0) -> np.ndarray:
    """A deterministic codec input for `task` (heavy-tailed values, as features are)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape or small_shape(ctc, task))
    dtype = np.dtype(ctc.task(task).dtype)
    feature = (rng.standard_t(4, shape) * 2.0).astype(dtype)
    if spec.input_kind == "feature":
        return feature
    pipe = Preprocessor.for_task(ctc, task, spec.family, spec.input_kind, shape, dtype)
    return pipe.forward(feature)


def _decode_fresh(args: tuple) -> str:
    spec, options, bitstream = args
    return canonical_hash(spec.open(options).decode(bitstream))


def check_codec(spec: CodecSpec, tasks: Sequence[str] | None = None, options: dict | None = None,
                ctc: CTC | None = None, shapes: dict[str, Sequence[int]] | None = None,
                fresh_process: bool = False, hostile: Sequence[bytes] = (),
                memory_limit: int = HOSTILE_MEMORY_LIMIT) -> ConformanceReport:
    """Run the conformance checks; raise AssertionError naming the first failure.

    `hostile`: bitstreams claiming huge outputs that the decoder must refuse (raise) without
    allocating more than `memory_limit` bytes.
    """
    ctc = ctc or load_ctc()
    # the paper's three packings by default; every task of any other CTC
    tasks = tuple(tasks or (("cls", "csr", "tti") if set(SMALL_SHAPES) <= set(ctc.tasks) else ctc.tasks))
    options = dict(options or {})
    missing = spec.missing(options)
    assert not missing, f"{spec.name}: cannot run here: {missing}"
    bits: dict[str, list[int]] = {}
    for task in tasks:
        data = sample_input(ctc, spec, task, (shapes or {}).get(task))
        points = codec_rate_points(spec, ctc, task)
        assert points, f"{spec.name}: no rate points for {task}"
        bits[task] = []
        for point in points:
            encoder = spec.open(options)
            stream = encoder.encode(data.copy(), point, task)
            finish_encode(encoder)
            assert isinstance(stream, bytes), f"{spec.name}: encode must return bytes, got {type(stream).__name__}"
            again = spec.open(options).encode(data.copy(), point, task)
            assert stream == again, f"{spec.name}: {task} at {point:g}: same input gave different bytes"
            decoded = spec.open(options).decode(stream)  # a fresh instance: bytes alone
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
        if task == tasks[0]:
            check_bounded_decoder(spec, options, header_variants(stream), must_refuse=False, limit=memory_limit)
    check_bounded_decoder(spec, options, list(hostile), must_refuse=True, limit=memory_limit)
    return ConformanceReport(spec.name, tuple(tasks), bits)


def header_variants(stream: bytes) -> list[bytes]:
    """The stream with 0xFF over each 4-byte window of its first HEADER_PROBE bytes."""
    probe = min(len(stream), HEADER_PROBE)
    return [stream[:i] + b"\xff" * 4 + stream[i + 4:] for i in range(max(probe - 3, 0))]


def check_bounded_decoder(spec: CodecSpec, options: dict, streams: Sequence[bytes], must_refuse: bool,
                          limit: int = HOSTILE_MEMORY_LIMIT) -> None:
    """Each stream is decoded by a fresh instance within `limit` bytes; `must_refuse`: it must raise."""
    for index, stream in enumerate(streams):
        peak, error = _traced_peak(lambda: spec.open(options).decode(stream))
        what = f"{spec.name}: hostile bitstream {index} ({len(stream)} bytes)"
        assert not isinstance(error, MemoryError), (
            f"{what}: the decoder tried to allocate more memory than there is; bound allocations by the "
            "declared size and refuse absurd sizes")
        assert peak <= limit, (
            f"{spec.name}: allocated {peak >> 20} MiB decoding a bitstream that claims a huge output "
            f"(limit {limit >> 20} MiB; {what}): bound decompression by the header's declared size "
            "and refuse sizes no real frame has")
        assert error is not None or not must_refuse, f"{what}: decoded without complaint; it must be refused"


def _traced_peak(call) -> tuple[int, BaseException | None]:
    """Peak bytes allocated (Python and NumPy, via tracemalloc) while `call` runs, and what it raised."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    error = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - a refusal may be any exception; we only look at it
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    return peak, error


def deflate_bomb(size: int) -> bytes:
    """A valid zlib stream that inflates to `size` zero bytes from about size/1000 bytes.

    Made without holding `size` bytes: after a full flush deflate forgets its history, so
    every further MiB of zeros compresses to the same block, repeated; the Adler-32 is
    accumulated a MiB at a time.
    """
    chunk = bytes(1 << 20)
    count, rest = divmod(size, len(chunk))
    deflate = zlib.compressobj(9)

    def block(data: bytes) -> bytes:
        return deflate.compress(data) + deflate.flush(zlib.Z_FULL_FLUSH)

    parts = [block(chunk)] if count else []  # the first block carries the zlib header
    if count > 1:
        parts.append(block(chunk) * (count - 1))
    parts.append(block(bytes(rest)))
    checksum = 1
    for _ in range(count):
        checksum = zlib.adler32(chunk, checksum)
    checksum = zlib.adler32(bytes(rest), checksum)
    return b"".join(parts) + b"\x03\x00" + struct.pack(">I", checksum)  # empty final block, Adler-32
