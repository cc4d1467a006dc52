"""The codec contract: what a codec plugin declares and implements.

A codec plugin returns `CodecSpec` records from its `harness_codecs` hook. The
harness does everything around the codec (pre-processing for the codec's family,
bit counting, timing, hashing, checks); the codec only maps its input to bytes
and back. Everything the decoder needs must be in the bytes, so it is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
import inspect
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from harness.options import Option, check_options

InputKind = Literal["frame10", "frame01", "feature"]
INPUT_KINDS: tuple[str, ...] = ("frame10", "frame01", "feature")

#: The most samples a decoder should accept from a bitstream header: 2^26, over three times
#: the largest CTC frame (dpt, 3222 x 6144). A header declaring more is corrupt or hostile.
MAX_FRAME_SAMPLES = 1 << 26


@runtime_checkable
class Codec(Protocol):
    """An instantiated codec.

    `encode` receives, by the spec's `input_kind`:
      - frame10: the packed 2-D frame, uint16 in [0, 1023] (CTC truncation,
        10-bit quantization and packing of the codec's family already applied);
      - frame01: the packed 2-D frame, float32 in [0, 1] (truncation and
        normalization of the family, no integer step);
      - feature: the raw stored feature (N, C, H, W) as float32/float16.
    `decode` gets only the bytes and must return an array of the same shape and
    kind as `encode`'s input. Bitstreams may come from others: `decode` never
    allocates more than the header declares and refuses declared sizes beyond
    MAX_FRAME_SAMPLES (`harness.testing.check_codec` tries hostile streams).

    Optionally `after_encode()`: checks a codec makes of its own last encoding
    (e.g. that its decoder agrees with its encoder). The harness calls it right
    after `encode`, outside the encode timer, and a CodecError from it fails the job.

    Optionally `encode_log() -> str`: the codec's own summary of its last
    encoding (e.g. an external encoder's bits and PSNR lines); the harness keeps
    it in the run directory as logs/<task>/<rate point>/<sample>.txt.
    """

    def encode(self, data: np.ndarray, rate_point: float, task: str) -> bytes: ...

    def decode(self, bitstream: bytes) -> np.ndarray: ...


def finish_encode(codec: Codec) -> None:
    """Run the codec's own check of its last encoding, if it has one (untimed)."""
    check = getattr(codec, "after_encode", None)
    if check is not None:
        check()


def encode_log(codec: Codec) -> str:
    """The codec's summary of its last encoding, '' when it keeps none."""
    summary = getattr(codec, "encode_log", None)
    return (summary() or "") if summary is not None else ""


CodecFactory = Callable[[Mapping[str, str]], Codec]


@dataclass(frozen=True)
class CodecSpec:
    """What a codec plugin declares.

    Example (the zlib reference plugin)::

        CodecSpec(name="zlib", version="1.0", family="handcrafted", input_kind="frame10",
                  rate_parameter="shift", rate_points=(0, 1, 2, 3, 4),
                  factory=lambda options: ZlibCodec(),
                  description="zlib on the 10-bit frame")

    - family: whose pre-processing and truncation ranges apply, a family of the CTC
      (`harness ctc`): "handcrafted" (the 10-bit frame VTM codes) or "learned" (the
      [0, 1] frame); None for input_kind "feature" (the codec does its own). The
      names of earlier CTC versions ("vtm", "hyperprior") still work, with a warning.
    - rate_points: ordered from the highest rate to the lowest. A tuple for all
      tasks, a mapping task -> tuple, or None to use the CTC's points of the
      family (QPs for handcrafted, the task's λs for learned).
    - availability([options]): returns None when the codec can run here, or a message
      saying what is missing and how to provide it (shown by `harness plugins`).
    - options: the options the factory accepts: name -> default (free-form string) or
      `harness.Option` (kind, choices, bounds). The harness refuses any other name and any value
      that does not fit before the factory is called (`open`), naming the codec and the option.
    - provenance: given the options, facts to record in run.json (e.g. the
      external encoder's version string).
    - trainer: for learned codecs, `trainer(frames, rate_point, out_dir,
      settings, log) -> checkpoint path`; `harness train` prepares the frames
      (the codec's input kind, from a folder of features) and the settings
      (the CTC's per-task training table, overridable).
    - model_files: for codecs with trained models, `model_files(options, task,
      rate_point) -> [paths]`, the files a job's coding depends on. Their hashes
      go into the run's key: a run directory is not resumed with other weights.
    """

    name: str
    version: str
    family: str | None
    input_kind: str
    factory: CodecFactory
    rate_parameter: str = "qp"
    rate_points: tuple[float, ...] | Mapping[str, tuple[float, ...]] | None = None
    description: str = ""
    options: Mapping[str, str | Option] = field(default_factory=dict)
    availability: Callable[..., str | None] | None = None  # () or (options)
    provenance: Callable[[Mapping[str, str]], dict[str, str]] | None = None
    trainer: Callable[..., object] | None = None
    model_files: Callable[[Mapping[str, str], str, float], list[Path]] | None = None
    external_tools: tuple[str, ...] = ()
    lossless: bool = False

    def open(self, options: Mapping[str, str] | None = None) -> Codec:
        """The codec with these -o options, after checking them against the declaration (the one
        way the harness makes a codec: runs, workers, verify, crosscheck, conformance)."""
        given = dict(options or {})
        check_options(self.name, self.options, given)
        return self.factory(given)

    def missing(self, options: Mapping[str, str] | None = None) -> str | None:
        """None when the codec can run here (with these -o options), else what is missing.

        `availability` may take the options (tools given as -o encoder=PATH) or nothing."""
        if not self.availability:
            return None
        takes_options = bool(inspect.signature(self.availability).parameters)
        return self.availability(dict(options or {})) if takes_options else self.availability()


def format_rate_point(parameter: str, value: float) -> str:
    """A rate point as used in paths and labels: qp22, lambda0.0017, shift0."""
    return f"{parameter}{value:g}"
