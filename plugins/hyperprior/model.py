"""The learned anchor's network: CompressAI's ScaleHyperprior with one channel.

Only the first conv of g_a and the last deconv of g_s differ from CompressAI's
model (1 channel in and out, N=128, M=192 as the CTC says), so state-dict keys
match the official checkpoints. Checkpoints load with weights_only=True
(nothing is unpickled but tensors) and a DataParallel "module." prefix is
stripped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
import struct
import zlib

import torch
from compressai.models import ScaleHyperprior
from compressai.models.utils import conv, deconv

from harness import HarnessError


class FeatureHyperprior(ScaleHyperprior):
    """ScaleHyperprior with `channels` input/output channels (1 for packed features).

    Only the first conv of g_a and the last deconv of g_s differ from
    CompressAI's model, so the state-dict keys are the same as the official
    (modified-CompressAI) checkpoints.
    """

    def __init__(self, N: int = 128, M: int = 192, channels: int = 1, input_gain: float = 1.0,
                 input_center: float = 0.0, **kwargs) -> None:
        super().__init__(N, M, **kwargs)
        self.g_a[0] = conv(channels, N)
        self.g_s[-1] = deconv(N, channels)
        self.channels = int(channels)
        self.input_gain = float(input_gain)
        self.input_center = float(input_center)
        if not self.input_gain > 0:
            raise HarnessError(f"input_gain must be > 0, got {input_gain}")
        self.column_center: torch.Tensor | None = None
        self.column_gain: torch.Tensor | None = None

    # Input normalization: g_a sees (x - center) * gain and g_s's output is mapped back by the inverse, so
    # frames that fill only a sliver of [0, 1] (the mini features: std 0.03-0.06 around 0.5) reach the
    # network at the spread its initialization expects. Identity (gain 1, center 0) is CompressAI's model;
    # other values are kept in the state dict as the extra entries NORM_KEYS.
    NORM_KEYS = ("input_gain", "input_center")
    # Per-column normalization (input_norm="column"): each column of the frame, i.e. each channel of the
    # token-by-channel packings (dinov2, llama3), gets its own centre and gain, measured on the training
    # frames. A few massive channels otherwise set the frame's range and every other channel is a faint
    # ripple the network never learns to code. The model then codes frames of exactly that width.
    COLUMN_KEYS = ("column_center", "column_gain")

    def set_column_norm(self, center: torch.Tensor, gain: torch.Tensor) -> None:
        center = torch.as_tensor(center, dtype=torch.float32).flatten()
        gain = torch.as_tensor(gain, dtype=torch.float32).flatten()
        if center.shape != gain.shape or center.numel() == 0:
            raise HarnessError(f"column normalization needs one centre and one gain per column, got "
                               f"{center.numel()} and {gain.numel()}")
        if not (torch.isfinite(center).all() and torch.isfinite(gain).all() and (gain > 0).all()):
            raise HarnessError("column normalization needs finite centres and finite positive gains")
        self.column_center, self.column_gain = center, gain

    @property
    def columns(self) -> int | None:
        """The frame width a column-normalized model codes (None: any width)."""
        return None if self.column_gain is None else int(self.column_gain.numel())

    def distortion_weights(self) -> torch.Tensor | float:
        """What a squared frame error is multiplied by to measure it on the network's scale per column."""
        return 1.0 if self.column_gain is None else self.column_gain**2

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        if self.column_gain is not None:
            if x.shape[-1] != self.columns:
                raise HarnessError(f"this model normalizes {self.columns} columns; the frame has {x.shape[-1]}")
            return (x - self.column_center.to(x)) * self.column_gain.to(x)
        return x if self._identity else (x - self.input_center) * self.input_gain

    def _from_net(self, x: torch.Tensor) -> torch.Tensor:
        if self.column_gain is not None:
            return x / self.column_gain.to(x) + self.column_center.to(x)
        return x if self._identity else x / self.input_gain + self.input_center

    @property
    def _identity(self) -> bool:
        return self.input_gain == 1.0 and self.input_center == 0.0 and self.column_gain is None

    def forward(self, x):
        out = super().forward(self._to_net(x))
        out["x_hat"] = self._from_net(out["x_hat"])
        return out

    def compress(self, x):
        return super().compress(self._to_net(x))

    def decompress(self, strings, shape):
        """CompressAI's decompress, with the clamp to [0, 1] after the inverse normalization."""
        assert isinstance(strings, list) and len(strings) == 2
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat = self.h_s(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
        return {"x_hat": self._from_net(self.g_s(y_hat)).clamp_(0, 1)}

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        if not self._identity:  # official-layout checkpoints stay free of extra keys
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
            for key in self.NORM_KEYS:
                sd[prefix + key] = torch.tensor(getattr(self, key), dtype=torch.float64)
            if self.column_gain is not None:
                for key in self.COLUMN_KEYS:
                    sd[prefix + key] = getattr(self, key).clone()
        return sd

    def load_state_dict(self, state_dict, strict: bool = True):
        state_dict = dict(state_dict)
        norm = {key: float(state_dict.pop(key)) for key in self.NORM_KEYS if key in state_dict}
        self.input_gain = norm.get("input_gain", 1.0)
        self.input_center = norm.get("input_center", 0.0)
        columns = [state_dict.pop(key) for key in self.COLUMN_KEYS if key in state_dict]
        if len(columns) == 1:
            raise HarnessError(f"state dict holds only one of {', '.join(self.COLUMN_KEYS)}")
        self.column_center = self.column_gain = None
        if columns:
            self.set_column_norm(*columns)
        return super().load_state_dict(state_dict, strict=strict)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> FeatureHyperprior:
        """A model shaped by the weights (N, M, channels; input normalization if stored), with them loaded."""
        try:
            N = state_dict["g_a.0.weight"].size(0)
            channels = state_dict["g_a.0.weight"].size(1)
            M = state_dict["g_a.6.weight"].size(0)
        except KeyError as exc:
            raise HarnessError(f"not a ScaleHyperprior state dict: key {exc} missing") from None
        net = cls(N, M, channels)
        net.load_state_dict(dict(state_dict))
        return net


def fingerprint(model: torch.nn.Module) -> int:
    """CRC-32 over parameter names and float32 bytes (entropy-coder tables excluded)."""
    crc = 0
    for name, p in sorted(model.named_parameters()):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(), crc)
    gain, center = getattr(model, "input_gain", 1.0), getattr(model, "input_center", 0.0)
    if (gain, center) != (1.0, 0.0):  # CompressAI-layout models keep their fingerprint
        crc = zlib.crc32(struct.pack("<dd", gain, center), crc)
    for key in FeatureHyperprior.COLUMN_KEYS:
        column = getattr(model, key, None)
        if column is not None:
            crc = zlib.crc32(column.to("cpu", torch.float32).contiguous().numpy().tobytes(), crc)
    return crc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file: {"state_dict": ...} or a bare state dict.

    Loaded with weights_only=True (no arbitrary unpickling); a DataParallel
    "module." prefix is stripped.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HarnessError(f"checkpoint {path} not found") from None
    except Exception as exc:  # pickle.UnpicklingError for anything but tensors/containers
        raise HarnessError(f"cannot read checkpoint {path} as a weights-only torch file: {exc}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HarnessError(f"checkpoint {path} holds neither a state dict nor {{'state_dict': ...}}")
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return dict(obj)


def load_checkpoint(path: str | Path) -> FeatureHyperprior:
    """An eval-mode CPU model from a CompressAI training checkpoint, entropy-coder CDFs built."""
    model = FeatureHyperprior.from_state_dict(read_state_dict(path))
    model.eval()
    model.update(force=True)  # the CDFs of a training checkpoint are empty or stale
    return model


