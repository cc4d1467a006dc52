"""Decode bitstreams from their bytes alone, in decode-only worker processes.

One path for everything that re-decodes a run or a bundle (`harness verify`, the cross-check's
decode check). A job names a stored bitstream, its recorded size and sha256, and the reconstruction
hash recorded at coding time; its result says whether the decode reproduces that hash.

Isolation. Workers are spawned for decoding only: no process here has ever encoded, so nothing an
encoder left in memory can make a decode agree. A worker is reused across bitstreams (the codec is
built once per worker per codec, options and plugins: `harness.jobs.codec_for_verify` caches it),
yet every decode starts from the bytes the worker itself reads from disk and checks against the
recorded size and sha256. Starting a fresh interpreter per bitstream cost ~0.75 s each, far more
than most decodes.

Limits, because a bitstream is untrusted input:
- memory: each worker's address space is capped (RLIMIT_AS, inherited by the external decoders it
  starts), so a decoder bomb fails its job instead of taking the machine down. By default the
  workers together get all but one share of the physical memory (RAM / (workers + 1) each), never
  less than 4 GiB nor more than 16 GiB: RLIMIT_AS counts mapped address space, not resident memory,
  and an honest decoder maps far more than it uses (importing torch alone maps 3.2 GiB and touches
  0.6 GiB). $FCM_HARNESS_DECODE_MEMORY_MIB overrides it; 0 turns the cap off (e.g. for a GPU
  decoder, whose driver reserves tens of GiB of address space).
- time: a decode that runs past the timeout (default 300 s, $FCM_HARNESS_DECODE_TIMEOUT_S) has its
  worker killed and replaced. Starting a worker and building a codec (loading model files) is
  bounded separately and more generously (SETUP_TIMEOUT_S at least).
- death: a worker that dies (segfault, abort, the OOM killer) fails only the job it was running.
`concurrent.futures.ProcessPoolExecutor` can do none of this (a dead worker breaks the whole pool),
hence the small pool below: one Process and one Pipe per worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math
import multiprocessing
from multiprocessing.connection import Connection, wait
import os
from pathlib import Path
import resource
import signal
import time

from harness.errors import HarnessError
from harness.results import read_stored

MEMORY_ENV = "FCM_HARNESS_DECODE_MEMORY_MIB"
TIMEOUT_ENV = "FCM_HARNESS_DECODE_TIMEOUT_S"
DEFAULT_MEMORY_MIB = 4096  # the floor of the default cap
MAX_DEFAULT_MEMORY_MIB = 16384
DEFAULT_TIMEOUT_S = 300.0
SETUP_TIMEOUT_S = 120.0  # spawning Python, importing the plugins, loading a codec's models


@dataclass(frozen=True)
class DecodeJob:
    run_dir: str  # the run or bundle root the bitstream path is relative to
    codec: str
    codec_options: tuple[tuple[str, str], ...]
    plugin_modules: tuple[str, ...]
    bitstream_path: str
    bytes: int
    bitstream_sha256: str
    recon_sha256: str
    label: str
    kind: str = "frame10"
    dtype: str = "uint16"  # what the hash at coding time was taken in
    original: Original | None = None  # given: the worker also measures the feature MSE against it


@dataclass(frozen=True)
class Original:
    """The feature a bitstream coded, and how its frame is restored (the CTC's post-processing)."""
    feature_path: str
    ctc_dir: str
    task: str
    family: str | None
    quant_rule: str


@dataclass(frozen=True)
class DecodeResult:
    label: str
    ok: bool
    problem: str = ""
    decode_s: float = 0.0  # wall time of the codec's decode call alone
    worker_pid: int = 0
    mismatch: bool = False  # decoded, to a reconstruction of another hash than the recorded one
    mse: float | None = None  # feature MSE against the job's original, when it was given and decoding worked
    mse_problem: str = ""  # why the MSE could not be measured (a mis-shaped reconstruction, a missing original)


@dataclass(frozen=True)
class DecodeLimits:
    memory_mib: int = DEFAULT_MEMORY_MIB  # per worker; 0: no cap
    timeout_s: float = DEFAULT_TIMEOUT_S  # per bitstream; 0: none

    @classmethod
    def default(cls, workers: int = 1) -> DecodeLimits:
        """The defaults for this many workers, or what $FCM_HARNESS_DECODE_MEMORY_MIB / _TIMEOUT_S say."""
        memory = _env_number(MEMORY_ENV, default_memory_mib(workers))
        return cls(int(memory), _env_number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))

    @classmethod
    def given(cls, workers: int, memory_mib: int | None = None, timeout_s: float | None = None) -> DecodeLimits:
        """The defaults, with what a command line gave on top (None: not given)."""
        limits = cls.default(workers)
        return cls(limits.memory_mib if memory_mib is None else memory_mib,
                   limits.timeout_s if timeout_s is None else timeout_s)


def default_memory_mib(workers: int) -> int:
    """An equal share of the physical memory, one share left over, within 4..16 GiB (see above)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return DEFAULT_MEMORY_MIB
    return min(MAX_DEFAULT_MEMORY_MIB, max(DEFAULT_MEMORY_MIB, physical // (max(1, workers) + 1)))


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise HarnessError(f"${name}: '{text}' is not a number >= 0 (0 turns the limit off)")
    return value


def cap_message(memory_mib: int) -> str:
    return f"decoder exceeded the memory cap of {memory_mib} MiB"


def timeout_message(seconds: float) -> str:
    return f"decode timed out after {seconds:g} s"


# --- in a worker -------------------------------------------------------------------------------

_memory_mib = 0  # this process's cap, for the message of a MemoryError


def decode_and_hash(job: DecodeJob) -> DecodeResult:
    """Read, check and decode one bitstream here and compare its reconstruction hash."""
    return _decode(job)[0]


def _decode(job: DecodeJob) -> tuple[DecodeResult, bool]:
    """The result, and whether this process should retire (after a MemoryError its state is suspect)."""
    try:
        return _read_decode_hash(job), False
    except MemoryError as exc:  # anywhere: reading, loading the codec, decoding, hashing
        problem = cap_message(_memory_mib) if _memory_mib else f"decode failed: MemoryError: {exc}"
        return DecodeResult(job.label, False, problem, worker_pid=os.getpid()), True


def _read_decode_hash(job: DecodeJob) -> DecodeResult:
    pid = os.getpid()
    try:
        data = read_stored(Path(job.run_dir), job.bitstream_path, job.bytes, job.bitstream_sha256, job.label)
    except HarnessError as exc:  # never decoded: the bytes are not the recorded ones
        return DecodeResult(job.label, False, str(exc), worker_pid=pid)
    decode_s = 0.0
    try:
        from harness.jobs import canonical_hash, canonical_output, codec_for_verify

        codec = codec_for_verify(job.codec, job.codec_options, job.plugin_modules)
        _tell_parent("begin")
        start = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - start
        digest = canonical_hash(canonical_output(decoded, job.kind, job.dtype))
    except MemoryError:
        raise
    except Exception as exc:  # a third-party decoder may raise anything; report it, go on
        problem = f"decode failed: {type(exc).__name__}: {exc}".replace("\n", " | ")[:2000]
        return DecodeResult(job.label, False, problem, decode_s, pid)
    mse, mse_problem = None, ""
    if job.original:  # a failure here is about the reconstruction or this machine's copy, not the decode
        try:
            mse = _feature_mse(job.original, decoded, job.kind)
        except MemoryError:
            raise
        except Exception as exc:
            mse_problem = f"{type(exc).__name__}: {exc}".replace("\n", " | ")[:2000]
    if digest != job.recon_sha256:
        return DecodeResult(job.label, False, "reconstruction differs from the one recorded at coding time",
                            decode_s, pid, mismatch=True, mse=mse, mse_problem=mse_problem)
    return DecodeResult(job.label, True, "", decode_s, pid, mse=mse, mse_problem=mse_problem)


def _feature_mse(original: Original, decoded, kind: str) -> float:
    """The decoded frame restored with the CTC's post-processing, against the original feature: measured
    here, beside the decode, so nobody decodes the stranger's bitstream again to re-measure distortion."""
    from harness.dataset import load_feature
    from harness.jobs import check_decoded, ctc_for, mean_squared_error
    from harness.processing import Preprocessor

    ctc = ctc_for(original.ctc_dir)
    feature = load_feature(Path(original.feature_path), ctc.task(original.task))
    if kind == "feature":
        return mean_squared_error(check_decoded(decoded, feature, kind), feature)
    pipe = Preprocessor.for_task(ctc, original.task, original.family, kind, feature.shape, feature.dtype,
                                 original.quant_rule)
    return mean_squared_error(pipe.inverse(check_decoded(decoded, pipe.forward(feature), kind)), feature)


_parent: Connection | None = None  # set in a pool worker; None when decode_and_hash runs elsewhere


def _tell_parent(*message: object) -> None:
    if _parent is not None:
        _parent.send(message)


def _serve(conn: Connection, memory_mib: int) -> None:
    """A worker: cap the address space, then decode jobs until told to stop (None) or the pipe closes."""
    global _parent, _memory_mib
    _parent = conn
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    if memory_mib:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = memory_mib * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        _memory_mib = memory_mib
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        result, retire = _decode(job)
        conn.send(("done", result, retire))
        if retire:
            return


# --- in the parent -----------------------------------------------------------------------------

class _Worker:
    """One decode-only process, its pipe, and the job it is running (if any)."""

    def __init__(self, context: multiprocessing.context.SpawnContext, memory_mib: int) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, memory_mib), daemon=True,
                                       name="harness-decode")
        self.process.start()
        child.close()
        self.index: int | None = None
        self.job: DecodeJob | None = None
        self.deadline = math.inf
        self.decoding = False

    def give(self, index: int, job: DecodeJob, setup_s: float) -> None:
        self.index, self.job, self.decoding = index, job, False
        self.deadline = time.monotonic() + setup_s
        try:
            self.conn.send(job)
        except OSError:  # it died idle: check() reports it as this job's failure
            pass

    def check(self, limits: DecodeLimits) -> tuple[DecodeResult | None, bool]:
        """(the finished job's result or None, whether this worker is gone)."""
        assert self.job is not None
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message[0] == "begin":
                    self.decoding = True
                    self.deadline = time.monotonic() + (limits.timeout_s or math.inf)
                else:
                    self.job = None
                    _, result, retire = message
                    return result, retire and self._reap()
        except (EOFError, OSError):  # its end of the pipe is gone: dead, or as good as dead
            self.process.join(1)  # let an exiting process say how it ended
            self.process.kill()
            return self._failed(self._death(limits)), self._reap()
        if not self.process.is_alive():
            return self._failed(self._death(limits)), self._reap()
        if time.monotonic() >= self.deadline:
            what = (timeout_message(limits.timeout_s) if self.decoding else
                    f"the decoder's setup (starting a worker, loading the codec) timed out after "
                    f"{max(limits.timeout_s, SETUP_TIMEOUT_S):g} s")
            self.process.kill()
            return self._failed(what), self._reap()
        return None, False

    def _failed(self, problem: str) -> DecodeResult:
        assert self.job is not None
        result = DecodeResult(self.job.label, False, problem, worker_pid=self.process.pid or 0)
        self.job = None
        return result

    def _death(self, limits: DecodeLimits) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
        else:
            how = f"exit code {code}"
        hint = (f"; it may have exceeded the memory cap of {limits.memory_mib} MiB, or the system ran out of "
                f"memory" if code in (-signal.SIGKILL, -signal.SIGABRT, -signal.SIGSEGV) and limits.memory_mib
                else "")
        when = "while decoding" if self.decoding else "before decoding (starting, reading or loading the codec)"
        return f"the decoder process died {when} ({how}){hint}"

    def _reap(self) -> bool:
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
        return True

    def stop(self) -> None:
        if self.process.is_alive() and not self.conn.closed:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if not self.conn.closed:
            self.conn.close()


def decode_jobs(jobs: Sequence[DecodeJob], workers: int = 2, limits: DecodeLimits | None = None,
                on_result: Callable[[DecodeResult], None] | None = None) -> list[DecodeResult]:
    """Decode every job in decode-only worker processes; results in job order.

    `on_result` sees each result as it arrives (for a progress bar). Every job gets a result: a
    read, decode, memory, time or crash failure is that job's failed result, never an exception."""
    workers = max(1, min(workers, len(jobs)))
    limits = limits or DecodeLimits.default(workers)
    setup_s = max(limits.timeout_s, SETUP_TIMEOUT_S) if limits.timeout_s else math.inf
    context = multiprocessing.get_context("spawn")
    pending = deque(enumerate(jobs))
    results: list[DecodeResult | None] = [None] * len(jobs)
    slots: list[_Worker | None] = [None] * workers
    try:
        while True:
            for i, worker in enumerate(slots):
                if (worker is None or worker.job is None) and pending:
                    worker = slots[i] = worker or _Worker(context, limits.memory_mib)
                    worker.give(*pending.popleft(), setup_s)
            busy = [w for w in slots if w is not None and w.job is not None]
            if not busy:
                break
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                 None if math.isinf(timeout) else timeout)
            for i, worker in enumerate(slots):
                if worker is None or worker.job is None:
                    continue
                index = worker.index
                result, gone = worker.check(limits)
                if gone:
                    slots[i] = None  # a fresh worker takes the next job
                if result is not None:
                    results[index] = result
                    if on_result:
                        on_result(result)
    finally:
        for worker in slots:
            if worker is not None:
                worker.stop()
    return [r for r in results if r is not None]
