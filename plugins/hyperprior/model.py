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

    def __init__(self, N: int = 128, M: int = 192, channels: int = 1, **kwargs) -> None:
        super().__init__(N, M, **kwargs)
        self.g_a[0] = conv(channels, N)
        self.g_s[-1] = deconv(N, channels)
        self.channels = int(channels)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> FeatureHyperprior:
        """A model shaped by the weights (N, M, channels), with them loaded."""
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


