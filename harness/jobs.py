"""One job = (codec, task, rate point, sample): code it, decode it, check and measure.

This is what a worker runs. It needs nothing but the `Job` record (paths and
names), so any executor can ship jobs to any process or machine that sees the
run directory. It never raises for a codec or input failure: it writes and
returns a failed record with the reason, and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
import importlib
import math
import os
from pathlib import Path
import resource
import time
import traceback
from typing import Any

import numpy as np

from harness.codec import Codec, CodecSpec, encode_log, finish_encode, format_rate_point
from harness.ctc import CTC, load_ctc
from harness.dataset import load_feature
from harness.errors import CodecError, HarnessError, OutputError
from harness.processing import Preprocessor
from harness.registry import Registry, default_registry
from harness.results import ResultRecord, job_paths, sha256_bytes, write_record
from harness.npyio import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class Job:
    codec: str
    task: str
    rate_parameter: str
    rate_point: float
    sample: str
    feature_path: str
    run_dir: str
    ctc_dir: str
    quant_rule: str
    codec_options: tuple[tuple[str, str], ...] = ()
    plugin_modules: tuple[str, ...] = ()
    feature_sha256: str = ""  # the content the job codes: a changed feature redoes exactly its jobs

    @property
    def rate_label(self) -> str:
        return format_rate_point(self.rate_parameter, self.rate_point)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.task, self.rate_label, self.sample)


# Per-process caches: a worker builds the registry, the CTC and each codec once.
_registries: dict[tuple[str, ...], Registry] = {}
_ctcs: dict[str, CTC] = {}
_codecs: dict[tuple, tuple[CodecSpec, Codec]] = {}


def registry_for(plugin_modules: tuple[str, ...]) -> Registry:
    if not plugin_modules:
        return default_registry()
    if plugin_modules not in _registries:
        modules = [importlib.import_module(m) for m in plugin_modules]
        _registries[plugin_modules] = Registry(extra_plugins=modules)
    return _registries[plugin_modules]


def codec_for(job: Job) -> tuple[CodecSpec, Codec]:
    key = (job.codec, job.codec_options, job.plugin_modules)
    if key not in _codecs:
        spec = registry_for(job.plugin_modules).codec(job.codec).spec
        missing = spec.missing(dict(job.codec_options))
        if missing:
            raise CodecError(f"codec '{spec.name}' cannot run here: {missing}")
        _codecs[key] = (spec, spec.open(dict(job.codec_options)))
    return _codecs[key]


def codec_for_verify(name: str, options: tuple[tuple[str, str], ...], plugin_modules: tuple[str, ...]) -> Codec:
    """A decoder instance for `harness verify` (no CTC or feature needed)."""
    job = Job(name, "", "", 0.0, "", "", "", "", "", options, plugin_modules)
    return codec_for(job)[1]


def ctc_for(path: str) -> CTC:
    if path not in _ctcs:
        _ctcs[path] = load_ctc(path)
    return _ctcs[path]


class _Clock:
    """Wall and CPU time of a block, CPU including waited-for child processes (external encoders)."""

    def __enter__(self) -> _Clock:
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime


def canonical_hash(array: np.ndarray) -> str:
    """sha256 over dtype, shape and C-order bytes: equal iff the arrays are identical."""
    array = np.ascontiguousarray(array)
    head = f"{array.dtype.str}{array.shape}".encode()
    return sha256_bytes(head + array.tobytes())


def check_decoded(decoded: Any, like: np.ndarray, kind: str) -> np.ndarray:
    """The decoder's output must match the input's shape and kind; returns it canonical."""
    if not isinstance(decoded, np.ndarray):
        raise CodecError(f"decode returned {type(decoded).__name__}, not a numpy array")
    if decoded.shape != like.shape:
        raise CodecError(f"decode returned shape {decoded.shape}, expected {like.shape}")
    if kind == "frame10":
        if decoded.dtype.kind not in "ui":
            raise CodecError(f"decode returned {decoded.dtype} for a 10-bit frame; expected integers")
        if decoded.size and (decoded.min() < 0 or decoded.max() > 1023):
            raise CodecError(f"decode returned values {decoded.min()}..{decoded.max()} outside 0..1023")
    else:
        if decoded.dtype.kind != "f":
            raise CodecError(f"decode returned {decoded.dtype}; expected floating point")
        if not np.isfinite(decoded).all():
            raise CodecError("decode returned NaN or Inf values")
    return canonical_output(decoded, kind, like.dtype)


def canonical_output(decoded: np.ndarray, kind: str, input_dtype: np.dtype | str) -> np.ndarray:
    """The decoder's output in the dtype its hash is taken in: uint16 frames, else the input's dtype."""
    return decoded.astype(np.uint16 if kind == "frame10" else np.dtype(input_dtype), copy=False)


def input_dtype(kind: str, task_dtype: str) -> str:
    """The dtype of what a codec of input `kind` is given (and must give back)."""
    return {"frame10": "uint16", "frame01": "float32"}.get(kind, task_dtype)


def mean_squared_error(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.subtract(a, b, dtype=np.float32)
    np.square(diff, out=diff)
    return float(diff.sum(dtype=np.float64) / max(diff.size, 1))


def frame_psnr(original: np.ndarray, decoded: np.ndarray, kind: str) -> float:
    if kind == "feature":
        return math.nan
    peak = 1023.0 if kind == "frame10" else 1.0
    mse = mean_squared_error(original, decoded)
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def run_job(job: Job) -> ResultRecord:
    """Execute one job and write its record; never raises for codec or data faults."""
    record = ResultRecord(job.codec, "", job.task, job.rate_parameter, job.rate_point, job.sample,
                          feature_sha256=job.feature_sha256)
    paths = job_paths(Path(job.run_dir), job.task, job.rate_label, job.sample)
    stage = "setup"
    try:
        spec, codec = codec_for(job)
        record.codec_version = spec.version
        ctc = ctc_for(job.ctc_dir)
        task = ctc.task(job.task)
        stage = "load"
        feature = load_feature(Path(job.feature_path), task)
        record.shape = "x".join(map(str, feature.shape))
        record.points = int(feature.size)
        stage = "preprocess"
        if spec.input_kind == "feature":
            pre, data = None, feature
        else:
            pre = Preprocessor.for_task(ctc, job.task, spec.family, spec.input_kind,
                                        feature.shape, feature.dtype, job.quant_rule)
            data = pre.forward(feature)
        record.frame_height, record.frame_width = (data.shape if data.ndim == 2 else (0, 0))
        stage = "encode"
        with _Clock() as enc:
            bitstream = codec.encode(data, job.rate_point, job.task)
        stage = "check"
        finish_encode(codec)
        if not isinstance(bitstream, (bytes, bytearray)):
            raise CodecError(f"encode returned {type(bitstream).__name__}, not bytes")
        bitstream = bytes(bitstream)
        atomic_write_bytes(paths.bitstream, bitstream)
        summary = encode_log(codec)
        if summary:  # the codec's own account (e.g. VTM's bits and PSNR), beside the run's records
            atomic_write_text(Path(job.run_dir) / "logs" / job.task / job.rate_label / f"{job.sample}.txt", summary)
        stage = "decode"
        stored = paths.bitstream.read_bytes()  # decode exactly what is counted
        with _Clock() as dec:
            decoded = codec.decode(stored)
        decoded = check_decoded(decoded, data, spec.input_kind)
        stage = "measure"
        recon = pre.inverse(decoded) if pre else decoded
        record.bytes = len(stored)
        record.bits = 8 * len(stored)
        record.bpfp = record.bits / record.points
        record.enc_cpu_s, record.enc_wall_s = enc.cpu, enc.wall
        record.dec_cpu_s, record.dec_wall_s = dec.cpu, dec.wall
        record.mse = mean_squared_error(recon, feature)
        record.frame_psnr_db = frame_psnr(data, decoded, spec.input_kind)
        record.constant_recon = bool(decoded.size and decoded.min() == decoded.max())
        record.bitstream_sha256 = sha256_bytes(stored)
        record.recon_sha256 = canonical_hash(decoded)
        record.bitstream_path = paths.relative_bitstream
    except OutputError:  # the harness cannot write (disk full, read-only): not the codec's fault, stop
        raise
    except HarnessError as exc:
        record.status, record.error = "failed", f"{stage}: {exc}"
    except Exception as exc:  # a third-party codec may raise anything
        last = traceback.extract_tb(exc.__traceback__)[-1]
        record.status = "failed"
        record.error = f"{stage}: {type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})"
    record.error = record.error.replace("\n", " | ")[:2000]
    write_record(paths.record, record)
    return record


def worker_init(threads: int) -> None:
    """Keep each worker to `threads` math threads so parallel jobs do not oversubscribe cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
