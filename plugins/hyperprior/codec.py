"""encode/decode of the hyperprior plugin: CompressAI's entropy coder, everything counted.

Bitstream (all integers little endian), format 1:

    offset  size  field
    0       2     magic b"HP"
    2       1     format version (1)
    3       1     n = length of the task name
    4       n     task name, UTF-8 (e.g. b"cls")
    4+n     8     λ, float64 (exactly the rate point; selects the checkpoint)
    12+n    4     model fingerprint: CRC-32 over the model's parameters
    16+n    4     H of the frame (before padding)
    20+n    4     W of the frame
    24+n    2     z height (latent rows of the hyper-latent)
    26+n    2     z width
    28+n    4     length of the y string in bytes
    32+n    4     length of the z string in bytes
    36+n    ...   z string, then y string (rANS, CompressAI's "ans" coder)

Header = 36 + len(task) bytes (39 for the CTC's three-letter tasks). The
padding is not stored: it follows from H, W (multiples of 64, floor(pad/2)
top/left, as the CTC says). z shape is redundant with H, W and is checked.
What the padding holds is the encoder's choice (the decoder drops it): zeros
by default, as the official evaluation; `pad="edge"` repeats the border
samples, which costs far fewer bits for frames centred away from 0 (the
mini frames sit around 0.5) and leaves the bitstream format unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
import struct

import numpy as np
import torch

from harness import MAX_FRAME_SAMPLES, CodecError, pad_to_multiple, unpad
from harness_plugins.hyperprior.checkpoints import find_checkpoint
from harness_plugins.hyperprior.model import FeatureHyperprior, fingerprint, load_checkpoint

MAGIC, FORMAT = b"HP", 1
PAD_MULTIPLE = 64  # g_a and h_a downsample by 2^4 * 2^2
PAD_MODES = ("zero", "edge")  # what the encoder puts in the padding (the decoder drops it)
_PREFIX = struct.Struct("<2sBB")          # magic, format, task-name length
_BODY = struct.Struct("<dIIIHHII")        # λ, fingerprint, H, W, zh, zw, len_y, len_z


@dataclass(frozen=True)
class Header:
    task: str
    lam: float
    fingerprint: int
    height: int
    width: int
    z_shape: tuple[int, int]
    len_y: int
    len_z: int

    def pack(self) -> bytes:
        task = self.task.encode("utf-8")
        if len(task) > 255:
            raise CodecError(f"hyperprior: task name longer than 255 bytes: {self.task!r}")
        return (_PREFIX.pack(MAGIC, FORMAT, len(task)) + task
                + _BODY.pack(self.lam, self.fingerprint, self.height, self.width, *self.z_shape,
                             self.len_y, self.len_z))

    @classmethod
    def unpack(cls, data: bytes) -> tuple[Header, int]:
        """The header and the offset of the payload."""
        if len(data) < _PREFIX.size:
            raise CodecError(f"hyperprior: bitstream of {len(data)} bytes is shorter than its header")
        magic, fmt, n = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise CodecError("hyperprior: not a hyperprior-plugin bitstream")
        if fmt != FORMAT:
            raise CodecError(f"hyperprior: bitstream format {fmt}, this decoder reads {FORMAT}")
        end = _PREFIX.size + n + _BODY.size
        if len(data) < end:
            raise CodecError(f"hyperprior: bitstream of {len(data)} bytes is shorter than its header")
        task = data[_PREFIX.size:_PREFIX.size + n].decode("utf-8")
        lam, fp, h, w, zh, zw, len_y, len_z = _BODY.unpack_from(data, _PREFIX.size + n)
        return cls(task, lam, fp, h, w, (zh, zw), len_y, len_z), end


def header_size(task: str) -> int:
    return _PREFIX.size + len(task.encode("utf-8")) + _BODY.size


class HyperpriorCodec:
    """encode(frame01, λ, task) -> bytes; decode(bytes) -> frame01. Models cached per (task, λ).

    threads pins torch's intra-op thread count during encode/decode (default 1, as the
    official evaluation): decoded frames are bit-identical only at the same thread count
    (the synthesis convolutions' summation order depends on it), and pinning also keeps
    encoder and decoder computing the same hyper-decoder scales.
    """

    def __init__(self, checkpoints: str | Path | None = None, device: str = "cpu", threads: int | None = 1,
                 models: Mapping[tuple[str, float], FeatureHyperprior] | None = None, best: bool = False,
                 model_task: str | None = None, pad: str = "zero") -> None:
        if pad not in PAD_MODES:
            raise CodecError(f"hyperprior: pad must be one of {', '.join(PAD_MODES)}, got {pad!r}")
        self.pad = pad
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self.model_task = model_task  # code every task with this task's models (generalization study)
        self.device = torch.device(device)
        self.threads = threads
        self.best = best
        self._models: dict[tuple[str, float], tuple[FeatureHyperprior, int]] = {}
        for key, model in (models or {}).items():
            self.add_model(key[0], key[1], model)

    def add_model(self, task: str, lam: float, model: FeatureHyperprior) -> None:
        """Use `model` (CDFs must exist: model.update(force=True)) for (task, λ)."""
        model = model.to(self.device).eval()
        self._models[(task, float(lam))] = (model, fingerprint(model))

    def model(self, task: str, lam: float) -> tuple[FeatureHyperprior, int]:
        key = (task, float(lam))
        if key not in self._models:
            if self.checkpoints is None:
                raise CodecError("hyperprior: no checkpoint directory given (codec option 'checkpoints')")
            self.add_model(task, lam, load_checkpoint(find_checkpoint(self.checkpoints, task, lam, self.best)))
        return self._models[key]

    def _threads(self):
        return _Threads(self.threads)

    def encode(self, frame: np.ndarray, rate_point: float, task: str) -> bytes:
        if frame.ndim != 2:
            raise CodecError(f"hyperprior: expects a 2-D frame, got shape {frame.shape}")
        lam = float(rate_point)
        task = self.model_task or task  # the header names the model's task, so decode finds the same model
        model, fp = self.model(task, lam)
        h, w = frame.shape
        padded, pads = pad_to_multiple(np.asarray(frame, dtype=np.float32), PAD_MULTIPLE)
        if self.pad == "edge":
            padded = np.pad(np.asarray(frame, dtype=np.float32), ((pads[0], pads[1]), (pads[2], pads[3])),
                            mode="edge")
        x = torch.from_numpy(np.ascontiguousarray(padded))[None, None].to(self.device)
        with self._threads(), torch.inference_mode():
            out = model.compress(x)
        (y_string,), (z_string,) = out["strings"]
        zh, zw = (int(s) for s in out["shape"])
        header = Header(task, lam, fp, h, w, (zh, zw), len(y_string), len(z_string))
        return header.pack() + z_string + y_string

    def decode(self, bitstream: bytes) -> np.ndarray:
        head, offset = Header.unpack(bitstream)
        if len(bitstream) != offset + head.len_z + head.len_y:
            raise CodecError(f"hyperprior: bitstream has {len(bitstream)} bytes, header says "
                             f"{offset + head.len_z + head.len_y}")
        if not 0 < head.height * head.width <= MAX_FRAME_SAMPLES:  # before the model allocates latents for it
            raise CodecError(f"hyperprior: header declares a {head.height}x{head.width} frame; "
                             f"at most {MAX_FRAME_SAMPLES} samples")
        hp, wp = (-(-head.height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-head.width // PAD_MULTIPLE) * PAD_MULTIPLE)
        if head.z_shape != (hp // PAD_MULTIPLE, wp // PAD_MULTIPLE):
            raise CodecError(f"hyperprior: z shape {head.z_shape} does not fit a {head.height}x{head.width} frame")
        model, fp = self.model(head.task, head.lam)
        if fp != head.fingerprint:
            raise CodecError(f"hyperprior: the checkpoint for task '{head.task}', λ={head.lam:g} is not the "
                             f"model that encoded this bitstream (fingerprint {fp:08x} != {head.fingerprint:08x})")
        z_string = bitstream[offset:offset + head.len_z]
        y_string = bitstream[offset + head.len_z:]
        with self._threads(), torch.inference_mode():
            x_hat = model.decompress([[y_string], [z_string]], head.z_shape)["x_hat"]  # clamped to [0, 1]
        frame = x_hat[0, 0].to("cpu", torch.float32).numpy()
        ph, pw = hp - head.height, wp - head.width
        frame = unpad(frame, (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2))
        return np.ascontiguousarray(np.clip(frame, 0.0, 1.0), dtype=np.float32)


class _Threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, None

    def __enter__(self):
        if self.n:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.old:
            torch.set_num_threads(self.old)


